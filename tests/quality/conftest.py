"""Live-quality tests follow single predictions through resolution: every bar is scored at every
horizon (stride 1), except in the test of the strides themselves."""

from __future__ import annotations

import pytest

from orchestrator.quality import totals


@pytest.fixture(autouse=True)
def every_bar_scored(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if "strides" not in request.node.name:
        monkeypatch.setattr(totals, "OUTCOMES_PER_HORIZON", 10**9)
