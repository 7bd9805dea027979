"""Custom barriers asked at the same moment share one closed-form evaluation.

One barrier is a single row, and for a single row numpy's per-call cost is nearly all of the
closed form's cost (about 100 small array operations, the same for 1 row as for 64). Under load
many requests reach their barrier in the same turn of the event loop; like Triton's dynamic
batching, this evaluates them together: each request adds its question and awaits, the first
one schedules a flush for the loop's next turn, and the flush answers every question in one
barrier_odds call per path shape (signals/barriers.evaluate_together). A lone request waits one
loop turn (microseconds).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from orchestrator.features.barriers import PathShape
from orchestrator.signals.barriers import BarrierOutcome, BarrierQuestion, evaluate_together

Waiter = tuple[BarrierQuestion, "asyncio.Future[BarrierOutcome]"]


class BarrierBatcher:
    """Evaluates the questions of one event-loop turn together; counts what it batched."""

    def __init__(self) -> None:
        self._pending: list[Waiter] = []
        self.questions = 0
        self.batches = 0

    async def outcome(self, question: BarrierQuestion) -> BarrierOutcome:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[BarrierOutcome] = loop.create_future()
        self._pending.append((question, done))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await done

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        by_shape: defaultdict[PathShape, list[Waiter]] = defaultdict(list)
        for item in pending:
            by_shape[item[0].path.shape].append(item)
        for group in by_shape.values():
            self.batches += 1
            self.questions += len(group)
            try:
                results = evaluate_together([q for q, _ in group])
            except Exception as exc:  # every waiter hears of it, none hangs
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), result in zip(group, results, strict=True):
                if not done.done():  # a waiter that was cancelled meanwhile is skipped
                    done.set_result(result)
