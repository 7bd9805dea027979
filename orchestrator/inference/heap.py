"""The garbage collector kept off the engine's sweeps and its long-lived objects.

Measured at 10,000 symbols (docs/benchmarks.md): a bar-close sweep set off ~1,000 young
collections and two or three full ones, 0.3-0.45 s of the engine's ~2.5 CPU s, and the full ones
grew from sweep to sweep with the predictions live quality keeps open (70 ms, then 130 ms after
six sweeps, then more as the horizons fill). They found almost nothing: ~40 objects in cycles a
second, all of them young. So the collector waits while a sweep runs, whatever survived it is
frozen (moved where no collection looks; reference counting still frees it), and the whole heap
is walked only now and then, between sweeps, for the rare cycle among frozen objects.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from dataclasses import dataclass

FULL_COLLECTION_INTERVAL_S = 3600.0  # frozen objects that died in a cycle wait this long at most
MAX_PAUSE_S = 30.0  # sweeps back to back (a backlog): young cycles collected at least this often


@dataclass
class HeapStats:
    freezes: int = 0  # pauses whose survivors were frozen
    frozen_objects: int = 0  # counted at the last full collection (counting walks them all)
    full_collections: int = 0
    last_full_collection_ms: float = 0.0
    cycles_collected: int = 0  # objects the full collections found unreachable


class HeapKeeper:
    """`paused()` around every sweep (they overlap: the collector resumes when the last ends);
    `collect_if_due()` where no sweep runs. The collector is the process's, so is the keeper
    (`KEEPER`): every engine in it counts its sweeps on the same one."""

    def __init__(self, full_interval_s: float = FULL_COLLECTION_INTERVAL_S) -> None:
        self.full_interval_s = full_interval_s
        self.stats = HeapStats()
        self._depth = 0
        self._was_enabled = True
        self._full_at = self._settled_at = time.monotonic()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        if self._depth == 0:
            self._was_enabled = gc.isenabled()
            self._settled_at = time.monotonic()
            gc.disable()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 or time.monotonic() - self._settled_at >= MAX_PAUSE_S:
                self._settle()
            if self._depth == 0 and self._was_enabled:
                gc.enable()

    def _settle(self) -> None:
        """What the pause allocated (all of it young: nothing was collected) is searched once
        for cycles, and what lives is frozen (O(1): the lists are linked onto the frozen one)."""
        gc.collect(1)
        gc.freeze()
        self._settled_at = time.monotonic()
        self.stats.freezes += 1

    def collect_if_due(self) -> bool:
        """A full collection, frozen objects included, when the interval has passed and no
        sweep is running (it stops the event loop: ~1 s at 10,000 symbols)."""
        if self._depth or time.monotonic() - self._full_at < self.full_interval_s:
            return False
        started = time.perf_counter()
        gc.unfreeze()
        self.stats.cycles_collected += gc.collect()
        gc.freeze()
        self._full_at = time.monotonic()
        self.stats.full_collections += 1
        self.stats.last_full_collection_ms = (time.perf_counter() - started) * 1e3
        self.stats.frozen_objects = gc.get_freeze_count()
        return True


KEEPER = HeapKeeper()
