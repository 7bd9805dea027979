"""The collector kept off the sweeps: paused while any runs, survivors frozen, cycles found."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from orchestrator.inference import heap
from orchestrator.inference.heap import HeapKeeper


class _Node:
    """An object in a reference cycle with itself: only the collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def _collector_as_found() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()


def test_the_collector_waits_until_the_last_overlapping_sweep_ends() -> None:
    keeper = HeapKeeper()
    with keeper.paused():
        assert not gc.isenabled()
        with keeper.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the first sweep still runs
    assert gc.isenabled()


def test_what_a_sweep_leaves_is_frozen_and_its_dropped_cycles_are_collected() -> None:
    keeper = HeapKeeper()
    with keeper.paused():
        kept = [_Node() for _ in range(1_000)]
        dropped = weakref.ref(_Node())
    assert dropped() is None  # a cycle that died during the sweep is not frozen with the rest
    assert gc.get_freeze_count() >= len(kept)
    assert keeper.stats.freezes == 1
    tracked = {id(obj) for obj in gc.get_objects()}
    assert not any(id(node) in tracked for node in kept)  # no collection walks them now


def test_a_frozen_cycle_that_dies_waits_for_the_full_collection() -> None:
    keeper = HeapKeeper(full_interval_s=0.0)
    with keeper.paused():
        node = _Node()
    gone = weakref.ref(node)
    del node
    gc.collect()
    assert gone() is not None  # frozen: the ordinary collections do not see it
    assert keeper.collect_if_due()
    assert gone() is None
    assert keeper.stats.full_collections == 1
    assert keeper.stats.cycles_collected >= 2  # the node and its attribute dict
    assert keeper.stats.frozen_objects > 0


def test_no_full_collection_while_a_sweep_runs_or_before_it_is_due() -> None:
    assert not HeapKeeper(full_interval_s=3600.0).collect_if_due()
    keeper = HeapKeeper(full_interval_s=0.0)
    with keeper.paused():
        assert not keeper.collect_if_due()
    assert keeper.collect_if_due()


def test_sweeps_back_to_back_still_settle_young_cycles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "MAX_PAUSE_S", 0.0)
    keeper = HeapKeeper()
    with keeper.paused():
        with keeper.paused():
            dropped = weakref.ref(_Node())
        assert dropped() is None  # collected when the inner sweep ended, the outer running
        assert not gc.isenabled()
    assert gc.isenabled()
