"""/dashboard in headless Chromium: the stored bars on the chart, a replayed bar arriving live, a
backtest job run from the page, and a wrong key answered with a clear message. The backtest test
leaves its screenshot in docs/img/dashboard.png."""

from __future__ import annotations

import httpx
import pytest

from orchestrator.demo.replay import Replay
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import PROJECT_ROOT
from tests.browser.conftest import API_KEY, Dashboard
from tests.conftest import TrainedRepository
from tests.jobs.conftest import SHORT, Workers

SCREENSHOT = PROJECT_ROOT / "docs" / "img" / "dashboard.png"
WAIT_MS = 120_000  # a hang guard, not a speed bound
HISTORY_BARS = 500  # what the page asks /api/history for


async def _candles(board: Dashboard) -> int:
    count: int = await board.page.evaluate("window.dashboard.charts.candles.data().length")
    return count


async def _wait_text(board: Dashboard, selector: str, expected: str) -> None:
    await board.page.wait_for_function(
        "([sel, expected]) => document.querySelector(sel).textContent.trim() === expected",
        arg=[selector, expected],
        timeout=WAIT_MS,
    )


async def client_get(board: Dashboard, path: str) -> dict[str, object]:
    """What the page's own API answers for `path` (the signal it shows came from there)."""
    async with httpx.AsyncClient(base_url=board.base_url) as client:
        response = await client.get(path, headers={"X-API-Key": API_KEY})
    body: dict[str, object] = response.json()
    return body


async def _connected(board: Dashboard) -> None:
    """Bars, prediction and signal are on the page."""
    await _wait_text(board, "#bar-count", str(HISTORY_BARS))
    await board.page.wait_for_function(
        "document.querySelector('#model-version').textContent !== '–'"
        " && document.querySelector('#signal').textContent !== '–'",
        timeout=WAIT_MS,
    )


async def test_the_chart_shows_the_stored_bars_and_the_prediction(
    loaded: TrainedRepository, db: Database, dashboard: Dashboard
) -> None:
    await dashboard.open(API_KEY)
    await _connected(dashboard)
    stored = await BarStore(db).latest_bars("BTCUSD", Timeframe.M5, HISTORY_BARS)
    assert await _candles(dashboard) == len(stored) == HISTORY_BARS
    assert float(await dashboard.text("#last-close")) == pytest.approx(stored["close"].iloc[-1])
    assert await dashboard.text("#last-time") == f"{stored.index[-1]:%Y-%m-%d %H:%M}"
    async with httpx.AsyncClient(base_url=dashboard.base_url) as client:
        served = await client.get("/api/predict/BTCUSD", headers={"X-API-Key": API_KEY})
    prediction = served.json()
    assert await dashboard.text("#model-version") == prediction["model_version"]
    assert float(await dashboard.page.get_attribute("#confidence", "data-value") or "nan") == (
        pytest.approx(prediction["confidence"])
    )
    signal = (await client_get(dashboard, "/api/signals/BTCUSD"))["signal"]
    shown_edge = await dashboard.page.get_attribute("#signal", "data-expected-r")
    assert float(shown_edge or "nan") == pytest.approx(signal["expected_r"])
    rows = dashboard.page.locator("#horizons tbody tr")
    assert await rows.count() == len(prediction["horizons"]) == 4
    # The horizons shown by default draw their high and low, and the bounds of their intervals
    # where the models have them.
    shown = [h for h in prediction["horizons"] if h["horizon"] in ("scalping", "intraday")]
    lines = sum(
        2 + 2 * (h["high_interval"] is not None) + 2 * (h["low_interval"] is not None)
        for h in shown
    )
    assert await dashboard.page.evaluate("window.dashboard.state.bands.length") == lines
    # The models panel: each set's champion as GET /api/models says.
    sets = (await client_get(dashboard, "/api/models"))["sets"]
    assert isinstance(sets, list)
    base = next(entry for entry in sets if entry["model_set"] == "signal_ensemble")
    row = dashboard.page.locator('#model-sets tbody tr[data-model-set="signal_ensemble"]')
    await row.wait_for(timeout=WAIT_MS)
    cells = await row.locator("td").all_text_contents()
    assert cells[0] == "signal_ensemble (5m)"
    assert cells[1] == f"v{base['champion']}"
    assert "scalping" in cells[3]
    assert dashboard.errors == []


async def test_a_replayed_bar_appears_live(
    loaded: TrainedRepository, db: Database, dashboard: Dashboard
) -> None:
    await dashboard.open(API_KEY)
    await _connected(dashboard)
    await dashboard.page.wait_for_function(
        "document.querySelector('#live').textContent.startsWith('live')", timeout=WAIT_MS
    )
    # The same path as `make replay`: the next demo bar written to the store.
    written = await Replay(db, ["BTCUSD"]).step()
    bar = written.iloc[0]
    await _wait_text(dashboard, "#last-time", f"{bar['ts']:%Y-%m-%d %H:%M}")
    assert float(await dashboard.text("#last-close")) == pytest.approx(bar["close"])
    assert await _candles(dashboard) == HISTORY_BARS + 1
    assert await dashboard.text("#bar-count") == str(HISTORY_BARS + 1)
    # The prediction for the new bar came with it.
    assert f"{bar['ts']:%Y-%m-%d %H:%M}" in await dashboard.text("#live")
    assert dashboard.errors == []


async def test_a_backtest_runs_from_the_page(
    loaded: TrainedRepository, workers: Workers, dashboard: Dashboard
) -> None:
    workers.start()
    await dashboard.open(API_KEY)
    await _connected(dashboard)
    page = dashboard.page
    # Every status the page shows, in order (the poll's progress, recorded as it happens).
    await page.evaluate(
        """() => {
          window.seenStatuses = [];
          new MutationObserver(() => window.seenStatuses.push(
            document.querySelector('#bt-status').dataset.status)
          ).observe(document.querySelector('#bt-status'), {attributes: true});
        }"""
    )
    await page.fill("#bt-start", SHORT["start_date"])
    await page.fill("#bt-end", SHORT["end_date"])
    await page.select_option("#bt-strategy", SHORT["strategy"])
    await page.click("#bt-run")
    await page.wait_for_selector(
        "#bt-status[data-status=done], #bt-status[data-status=failed], "
        "#bt-status[data-status=error]",
        timeout=WAIT_MS,
    )
    assert await page.get_attribute("#bt-status", "data-status") == "done", (
        await dashboard.text("#bt-status") + "\n" + workers.logs()
    )
    seen = await page.evaluate("window.seenStatuses")
    assert seen[0] == "queued"
    assert seen[-1] == "done"
    # The job this page submitted (other tests' jobs may share the queue and the database).
    job_url = await page.get_attribute("#bt-status", "data-job-url")
    assert job_url is not None
    async with httpx.AsyncClient(base_url=dashboard.base_url) as client:
        result = (await client.get(job_url, headers={"X-API-Key": API_KEY})).json()["result"]
    assert result["request"]["strategy"] == SHORT["strategy"]
    total_r = await page.get_attribute("#bt-total-r", "data-value")
    assert float(total_r or "nan") == pytest.approx(result["metrics"]["overall"]["total_r"])
    points = await page.evaluate("window.dashboard.charts.equity.data().length")
    assert points == len(set(result["equity"]["times"])) > 0
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOT)
    assert dashboard.errors == []


async def test_a_wrong_key_is_answered_with_a_clear_message(
    loaded: TrainedRepository, dashboard: Dashboard
) -> None:
    async with httpx.AsyncClient(base_url=dashboard.base_url) as client:
        assert (await client.get("/dashboard/")).status_code == 200  # the page is public
        assert (await client.get("/api/history/BTCUSD")).status_code == 401  # the data is not
    await dashboard.open("not-the-key")
    message = dashboard.page.locator("#message")
    await message.wait_for(state="visible", timeout=WAIT_MS)
    text = await message.text_content() or ""
    assert "refused the API key" in text
    assert "invalid credentials" in text
    assert await dashboard.text("#live") == "unauthorized"
    assert await _candles(dashboard) == 0
    # No key at all says that instead; the right key clears the message and loads the chart.
    await dashboard.page.fill("#api-key", "")
    await dashboard.page.click("#connect")
    await dashboard.page.wait_for_function(
        "document.querySelector('#message').textContent.includes('missing credentials')",
        timeout=WAIT_MS,
    )
    await dashboard.page.fill("#api-key", API_KEY)
    await dashboard.page.click("#connect")
    await _connected(dashboard)
    assert await message.is_hidden()
    assert dashboard.errors == []


async def _shown_p_tp(board: Dashboard) -> float:
    return float(await board.page.get_attribute("#barrier", "data-p-tp") or "nan")


async def test_dragging_the_take_profit_line_asks_for_its_odds(
    loaded: TrainedRepository, dashboard: Dashboard
) -> None:
    """The signal's own levels first; typed levels and a dragged line are answered by the API
    (the page shows what /api/signals answers for the same levels)."""
    page = dashboard.page
    await dashboard.open(API_KEY)
    await _connected(dashboard)
    await page.wait_for_function("window.dashboard.state.barrier !== null", timeout=WAIT_MS)
    default = (await client_get(dashboard, "/api/signals/BTCUSD"))["barrier"]
    assert isinstance(default, dict)
    assert await _shown_p_tp(dashboard) == pytest.approx(default["p_tp_first"])

    await page.select_option("#barrier-side", "long")
    await page.fill("#barrier-tp", "3")
    await page.fill("#barrier-sl", "1")
    await page.press("#barrier-sl", "Enter")
    await page.wait_for_function(
        "(b => b.tp_atr === 3 && b.side === 'long')(window.dashboard.state.barrier)",
        timeout=WAIT_MS,
    )
    horizon = await page.input_value("#barrier-horizon")
    asked = await client_get(
        dashboard, f"/api/signals/BTCUSD?tp=3&sl=1&side=long&horizon={horizon}"
    )
    typed = asked["barrier"]
    assert isinstance(typed, dict)
    assert await _shown_p_tp(dashboard) == pytest.approx(typed["p_tp_first"])
    assert await dashboard.text("#barrier-source") == typed["answered_by"]

    # Drag the TP line down to 2 ATR above the entry: a nearer take-profit is reached more often.
    ys = await page.evaluate(
        """() => {
          const { charts, state } = window.dashboard;
          const to = state.prediction.close + 2 * state.prediction.atr;
          const from = state.barrierLines.tp.options().price;
          return [charts.candles.priceToCoordinate(from), charts.candles.priceToCoordinate(to)];
        }"""
    )
    box = await page.locator("#chart").bounding_box()
    assert box is not None
    assert None not in ys, "both levels are inside the chart's price range"
    x = box["x"] + box["width"] / 3
    await page.mouse.move(x, box["y"] + ys[0])
    await page.mouse.down()
    await page.mouse.move(x, box["y"] + ys[1], steps=8)
    await page.mouse.up()
    await page.wait_for_function(
        "Math.abs(window.dashboard.state.barrier.tp_atr - 2) < 0.3", timeout=WAIT_MS
    )
    dragged = await page.evaluate("window.dashboard.state.barrier")
    assert dragged["p_tp_first"] > typed["p_tp_first"]
    assert dragged["sl_atr"] == pytest.approx(1.0)
    assert dashboard.errors == []
