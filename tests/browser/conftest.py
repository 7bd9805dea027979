"""The dashboard in a real headless Chromium (Debian's, installed when missing) against the app
served by a real uvicorn on the suite's MariaDB, Redis and Triton, with a real job worker for the
backtest panel."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec
import pytest
from playwright.async_api import Page, ViewportSize, async_playwright

from orchestrator.api.app import create_app
from orchestrator.api.dashboard import CHART_LIBRARY
from orchestrator.devstack.chromium import ensure_chromium, launch_args
from orchestrator.settings import PROJECT_ROOT, ApiSettings, Settings
from tests.api.conftest import served

# The job tests' services and worker processes, shared rather than copied.
from tests.jobs.conftest import job_env, settings, workers

__all__ = ["job_env", "settings", "workers"]

API_KEY = "dashboard-test-key"
VIEWPORT: ViewportSize = {"width": 1440, "height": 900}


@dataclass
class Dashboard:
    page: Page
    base_url: str
    errors: list[str] = field(default_factory=list)  # uncaught exceptions in the page

    async def open(self, key: str, symbol: str = "BTCUSD") -> None:
        await self.page.goto(f"{self.base_url}/dashboard/?symbol={symbol}&timeframe=5m")
        await self.page.fill("#api-key", key)
        await self.page.click("#connect")

    async def text(self, selector: str) -> str:
        return (await self.page.text_content(selector) or "").strip()


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, and the chart library the page loads (as `make test` builds it)."""
    if not CHART_LIBRARY.is_file():
        subprocess.run(
            ["make", "--no-print-directory", "dashboard-assets"], cwd=PROJECT_ROOT, check=True
        )
    return ensure_chromium()


@pytest.fixture
def dashboard_settings(settings: Settings) -> Settings:
    """The job tests' settings behind an API key, with a quick stream."""
    api = ApiSettings(
        internal_api_key=API_KEY, rate_limit_per_minute=1_000_000, ws_poll_interval_s=0.2
    )
    return msgspec.structs.replace(settings, api=api)


@pytest.fixture
async def dashboard(chromium: str, dashboard_settings: Settings) -> AsyncIterator[Dashboard]:
    async with served(create_app(dashboard_settings)) as port, async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium, headless=True, args=launch_args()
        )
        page = await browser.new_page(viewport=VIEWPORT)
        board = Dashboard(page, f"http://127.0.0.1:{port}")
        page.on("pageerror", lambda error: board.errors.append(str(error)))
        try:
            yield board
        finally:
            await browser.close()
