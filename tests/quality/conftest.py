"""Live-quality tests follow single predictions through resolution: every bar is scored at every
horizon (stride 1). The test of the strides themselves undoes this (`monkeypatch.undo()`)."""

from __future__ import annotations

import pytest

from orchestrator.quality import totals


@pytest.fixture(autouse=True)
def every_bar_scored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(totals, "OUTCOMES_PER_HORIZON", 10**9)
