"""/dashboard: the live dashboard's static page, script and chart library.

The files are public: they hold no data. The page asks for the API key (or a JWT), keeps it in the
browser's localStorage and sends it on every /api call and WebSocket, so the dashboard sees exactly
what the same key sees through the API. The chart library (TradingView's lightweight-charts) is
installed from npm by `make dashboard-assets` into static/vendor/, never committed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from litestar.router import Router
from litestar.static_files import create_static_files_router

STATIC_DIR = Path(__file__).resolve().parents[1] / "dashboard" / "static"
CHART_LIBRARY = STATIC_DIR / "vendor" / "lightweight-charts.standalone.production.js"
PATH = "/dashboard"

log = logging.getLogger("orchestrator.dashboard")


def dashboard_router() -> Router:
    """The static files under /dashboard (index.html at /dashboard/)."""
    if not CHART_LIBRARY.is_file():
        log.warning(
            "the dashboard's chart library is missing (%s): run `make dashboard-assets`",
            CHART_LIBRARY,
        )
    return create_static_files_router(
        path=PATH, directories=[STATIC_DIR], html_mode=True, name="dashboard"
    )
