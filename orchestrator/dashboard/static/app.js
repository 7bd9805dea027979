// The engine's live dashboard: candles from /api/history, predicted ranges from /api/predict,
// the signal from /api/signals, live updates from /ws/{symbol}, backtest jobs from /api/backtest,
// the model sets (champion, challenger, last retrain) from /api/models.
// Every call carries the key typed in the page (kept in localStorage), as any API client would.
"use strict";

const KEY_STORAGE = "ml-engine.apiKey";
const HISTORY_BARS = 500;
const POLL_MS = 500;
const RECONNECT_MS = 2000;
const MODELS_POLL_MS = 30000; // a retrain takes minutes; its progress shows within 5 s
const RETRAIN_POLL_MS = 5000;
const TIMEFRAME_S = { "1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14400, "1d": 86400 };
const HORIZON_COLORS = ["#f5a623", "#b07cff", "#4cc9f0", "#9ccc65", "#ff7aa2"];
const SHOWN_BY_DEFAULT = new Set(["scalping", "intraday"]);
const COLORS = { up: "#26a69a", down: "#ef5350", entry: "#4c8dff", muted: "#8793a3", text: "#d7dee8", grid: "#1f2733" };

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, title, message) {
    super(message);
    this.status = status;
    this.title = title;
  }
}

const state = {
  session: 0, // bumped on every Connect: answers for an older session are dropped
  key: "",
  symbol: "BTCUSD",
  timeframe: "5m",
  strategy: "balanced",
  bars: new Map(), // time (s) -> bar shown on the chart
  socket: null,
  prediction: null,
  signalMarkers: [], // live signals of this session
  tradeMarkers: [], // trades of the last backtest of this symbol
  shown: new Set(SHOWN_BY_DEFAULT),
  bands: [], // line series of the drawn horizons
  priceLines: [],
  barrier: null, // the last /api/signals barrier block: the caller's levels and their odds
  barrierLines: {}, // "tp" / "sl" -> the draggable price line
  barrierAsked: 0, // sequence number of the newest barrier request (older answers are dropped)
  modelsTimer: 0, // the next /api/models refresh
};

// --- messages ---------------------------------------------------------------------------------

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = `message ${kind}`;
  box.dataset.kind = kind;
  box.hidden = false;
}

function clearMessage() {
  $("message").hidden = true;
  $("message").textContent = "";
}

function setLive(text, kind = "") {
  const badge = $("live");
  badge.textContent = text;
  badge.className = `badge ${kind}`;
}

function authProblem(reason) {
  state.session += 1; // stop everything of the refused session
  closeSocket();
  setLive("unauthorized", "error");
  showMessage(
    `The engine refused the API key (401 Unauthorized: ${reason}). Enter a valid key — ` +
      "the engine's INTERNAL_API_KEY or a JWT issued by the gateway — and press Connect.",
  );
}

function describe(error) {
  if (error instanceof ApiError) {
    return error.status ? `${error.status} ${error.title}: ${error.message}` : error.message;
  }
  return String(error && error.message ? error.message : error);
}

// --- the API ----------------------------------------------------------------------------------

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    throw new ApiError(0, "network error", `the engine did not answer (${error.message})`);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const title = (body && body.error) || response.statusText;
    const message = (body && body.message) || response.statusText;
    const error = new ApiError(response.status, title, message);
    if (response.status === 401) authProblem(message);
    throw error;
  }
  return { status: response.status, body };
}

const seconds = (iso) => Math.floor(Date.parse(iso) / 1000);
const utc = (s) => new Date(s * 1000).toISOString().slice(0, 16).replace("T", " ");
const fmt = (x, digits) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));

function precisionFor(price) {
  if (price < 10) return 5;
  if (price < 1000) return 3;
  return 2;
}

// --- charts -----------------------------------------------------------------------------------

function chartOptions(element) {
  return {
    width: element.clientWidth,
    height: element.clientHeight,
    autoSize: true,
    layout: { background: { color: "transparent" }, textColor: COLORS.text },
    grid: { vertLines: { color: COLORS.grid }, horzLines: { color: COLORS.grid } },
    timeScale: { timeVisible: true, secondsVisible: false, borderColor: COLORS.grid },
    rightPriceScale: { borderColor: COLORS.grid },
  };
}

function createCharts(LC) {
  const chart = LC.createChart($("chart"), chartOptions($("chart")));
  const candles = chart.addSeries(LC.CandlestickSeries, {
    upColor: COLORS.up,
    downColor: COLORS.down,
    borderVisible: false,
    wickUpColor: COLORS.up,
    wickDownColor: COLORS.down,
  });
  const markers = LC.createSeriesMarkers(candles, []);
  const equityChart = LC.createChart($("equity"), chartOptions($("equity")));
  const rFormat = { type: "custom", formatter: (v) => `${v.toFixed(2)}R`, minMove: 0.01 };
  const equity = equityChart.addSeries(LC.LineSeries, {
    color: COLORS.entry,
    lineWidth: 2,
    priceFormat: rFormat,
    title: "equity",
  });
  const drawdown = equityChart.addSeries(LC.AreaSeries, {
    lineColor: COLORS.down,
    topColor: "rgba(239, 83, 80, 0.05)",
    bottomColor: "rgba(239, 83, 80, 0.35)",
    lineWidth: 1,
    priceFormat: rFormat,
    title: "drawdown",
  }, 1); // its own pane under the equity curve
  equityChart.panes()[1].setHeight(80);
  return { LC, chart, candles, markers, equityChart, equity, drawdown };
}

let charts = null;

// --- candles ----------------------------------------------------------------------------------

function toCandle(bar) {
  return { time: seconds(bar.time), open: bar.open, high: bar.high, low: bar.low, close: bar.close };
}

function showBarFacts() {
  const times = [...state.bars.keys()];
  $("bar-count").textContent = String(state.bars.size);
  if (!times.length) return;
  const last = state.bars.get(times[times.length - 1]);
  $("last-time").textContent = utc(last.time);
  $("last-close").textContent = String(last.close);
  $("last-close").dataset.value = String(last.close);
}

async function loadHistory(session) {
  const path = `/api/history/${encodeURIComponent(state.symbol)}?limit=${HISTORY_BARS}&timeframe=${state.timeframe}`;
  const { body } = await api(path);
  if (session !== state.session) return;
  const candles = body.bars.map(toCandle);
  state.bars = new Map(candles.map((c) => [c.time, c]));
  charts.candles.setData(candles);
  const precision = precisionFor(candles.length ? candles[candles.length - 1].close : 1);
  charts.candles.applyOptions({ priceFormat: { type: "price", precision, minMove: 10 ** -precision } });
  showBarFacts();
  setBacktestDefaults(candles);
}

async function appendNewBars(session) {
  // The stream says a bar closed; the newest few bars bring it (and any the socket missed).
  const path = `/api/history/${encodeURIComponent(state.symbol)}?limit=5&timeframe=${state.timeframe}`;
  const { body } = await api(path);
  if (session !== state.session) return;
  const newest = Math.max(...state.bars.keys());
  for (const candle of body.bars.map(toCandle)) {
    if (candle.time < newest) continue;
    charts.candles.update(candle);
    state.bars.set(candle.time, candle);
  }
  showBarFacts();
}

// --- predictions and signals -----------------------------------------------------------------

function clearBands() {
  for (const series of state.bands) charts.chart.removeSeries(series);
  state.bands = [];
}

function flatLine(from, count, step, value) {
  // One point per future bar: the time scale spaces bars by index, not by time.
  return Array.from({ length: count }, (_, i) => ({ time: from + i * step, value }));
}

function addBand(times, value, color, style, width) {
  const series = charts.chart.addSeries(charts.LC.LineSeries, {
    color,
    lineWidth: width,
    lineStyle: style,
    priceLineVisible: false,
    lastValueVisible: false,
    crosshairMarkerVisible: false,
  });
  series.setData(flatLine(times.from, times.count, times.step, value));
  state.bands.push(series);
}

function drawPrediction() {
  const prediction = state.prediction;
  clearBands();
  if (!prediction) return;
  const { LineStyle } = charts.LC;
  const step = TIMEFRAME_S[prediction.timeframe] || TIMEFRAME_S[state.timeframe];
  const from = seconds(prediction.bar_time) + step;
  const rows = [];
  prediction.horizons.forEach((h, i) => {
    const color = HORIZON_COLORS[i % HORIZON_COLORS.length];
    const shown = state.shown.has(h.horizon);
    const times = { from, count: h.bars, step };
    if (shown) {
      addBand(times, h.high, color, LineStyle.Solid, 2);
      addBand(times, h.low, color, LineStyle.Solid, 2);
      for (const pair of [h.high_interval, h.low_interval]) {
        if (!Array.isArray(pair)) continue;
        for (const bound of pair) addBand(times, bound, color, LineStyle.Dotted, 1);
      }
    }
    rows.push(horizonRow(h, color, shown));
  });
  $("horizons").tBodies[0].replaceChildren(...rows);
  const digits = precisionFor(prediction.close);
  const pLong = fmt(prediction.p_long * 100, 1);
  $("model-version").textContent = prediction.model_version;
  $("confidence").textContent = `${prediction.direction} · ${fmt(prediction.confidence * 100, 1)}% (p_long ${pLong}%)`;
  $("confidence").dataset.value = String(prediction.confidence);
  $("prediction-note").textContent =
    `Ranges predicted at the close of ${utc(seconds(prediction.bar_time))} UTC (${fmt(prediction.close, digits)}, ` +
    `ATR ${fmt(prediction.atr, digits)}): the highest high and lowest low expected over each horizon's bars.`;
}

function horizonRow(h, color, shown) {
  const digits = precisionFor(h.high);
  const pair = (p) => (Array.isArray(p) ? `${fmt(p[0], digits)} – ${fmt(p[1], digits)}` : "–");
  const row = document.createElement("tr");
  row.dataset.horizon = h.horizon;
  const toggle = document.createElement("input");
  toggle.type = "checkbox";
  toggle.checked = shown;
  toggle.addEventListener("change", () => {
    if (toggle.checked) state.shown.add(h.horizon);
    else state.shown.delete(h.horizon);
    drawPrediction();
  });
  const cells = [
    toggle,
    `<span class="swatch" style="background:${color}"></span>${h.horizon}`,
    String(h.bars),
    fmt(h.high, digits),
    fmt(h.low, digits),
    pair(h.high_interval),
    pair(h.low_interval),
  ];
  for (const content of cells) {
    const cell = document.createElement("td");
    if (content instanceof Node) cell.append(content);
    else cell.innerHTML = content;
    row.append(cell);
  }
  return row;
}

function drawSignal(response) {
  const signal = response.signal;
  const digits = precisionFor(signal.entry);
  for (const line of state.priceLines) charts.candles.removePriceLine(line);
  state.priceLines = [];
  const { LineStyle } = charts.LC;
  const trade = signal.action !== "none";
  state.priceLines.push(
    charts.candles.createPriceLine({
      price: signal.entry, color: COLORS.entry, title: "entry", lineStyle: LineStyle.Solid, lineWidth: 1, axisLabelVisible: true,
    }),
  );
  if (!state.barrier && response.barrier) drawBarrier(response.barrier);
  const time = seconds(response.bar_time);
  const marker = trade
    ? {
        time,
        position: signal.action === "buy" ? "belowBar" : "aboveBar",
        color: signal.action === "buy" ? COLORS.up : COLORS.down,
        shape: signal.action === "buy" ? "arrowUp" : "arrowDown",
        text: `${signal.action.toUpperCase()} ${fmt(signal.confidence * 100, 0)}%`, // TP/SL: price lines
      }
    : { time, position: "aboveBar", color: COLORS.muted, shape: "circle", text: "no trade" };
  // Earlier live signals stay as arrows; the "no trade" circle only marks the newest bar.
  state.signalMarkers = state.signalMarkers.filter((m) => m.time !== time && m.shape !== "circle");
  state.signalMarkers.push(marker);
  drawMarkers();
  const edge = `expected ${fmt(signal.expected_r, 3)} R net of ${fmt(signal.cost_r, 3)} R costs`;
  $("signal").textContent = trade
    ? `${signal.action} @ ${fmt(signal.entry, digits)} · TP ${fmt(signal.take_profit, digits)} · ` +
      `SL ${fmt(signal.stop_loss, digits)} · ${fmt(signal.risk_reward, 2)}:1 · ${edge} ` +
      `(${response.strategy.name})`
    : `no trade: ${signal.reason} (${response.strategy.name})`;
  $("signal").dataset.expectedR = String(signal.expected_r);
}

// --- the caller's own levels: P(take-profit first), P(stop first), P(neither), expected R ----------

function drawBarrier(barrier) {
  state.barrier = barrier;
  const digits = precisionFor(barrier.take_profit);
  const { LineStyle } = charts.LC;
  for (const [name, price, color] of [["tp", barrier.take_profit, COLORS.up], ["sl", barrier.stop_loss, COLORS.down]]) {
    const title = `${name.toUpperCase()} ${fmt(name === "tp" ? barrier.tp_atr : barrier.sl_atr, 2)} ATR`;
    const existing = state.barrierLines[name];
    if (existing) existing.applyOptions({ price, title });
    else {
      state.barrierLines[name] = charts.candles.createPriceLine({
        price, color, title, lineStyle: LineStyle.Dashed, lineWidth: 2, axisLabelVisible: true,
      });
    }
  }
  $("barrier-side").value = barrier.side;
  $("barrier-horizon").value = barrier.horizon;
  if (document.activeElement !== $("barrier-tp")) $("barrier-tp").value = fmt(barrier.tp_atr, 2);
  if (document.activeElement !== $("barrier-sl")) $("barrier-sl").value = fmt(barrier.sl_atr, 2);
  const pct = (p) => `${fmt(p * 100, 1)}%`;
  $("barrier-p-tp").textContent = `${pct(barrier.p_tp_first)} · TP ${fmt(barrier.take_profit, digits)}`;
  $("barrier-p-sl").textContent = `${pct(barrier.p_sl_first)} · SL ${fmt(barrier.stop_loss, digits)}`;
  $("barrier-p-neither").textContent = pct(barrier.p_neither);
  $("barrier-bars").textContent = `${fmt(barrier.expected_bars, 1)} of ${barrier.horizon_bars}`;
  $("barrier-r").textContent = `${fmt(barrier.expected_r, 3)} R (costs ${fmt(barrier.cost_r, 3)} R)`;
  $("barrier-source").textContent = barrier.answered_by;
  $("barrier-source").title = barrier.reason;
  $("barrier").dataset.pTp = String(barrier.p_tp_first);
}

// Asks for the odds of the levels in the form; the newest answer wins.
async function askBarrier(levels = {}) {
  if (!state.prediction) return;
  const asked = ++state.barrierAsked;
  const query = new URLSearchParams({
    timeframe: state.timeframe,
    strategy: state.strategy,
    side: $("barrier-side").value,
    horizon: $("barrier-horizon").value,
  });
  if (levels.tp_price !== undefined) query.set("tp_price", String(levels.tp_price));
  else query.set("tp", $("barrier-tp").value);
  if (levels.sl_price !== undefined) query.set("sl_price", String(levels.sl_price));
  else query.set("sl", $("barrier-sl").value);
  try {
    const response = await api(`/api/signals/${encodeURIComponent(state.symbol)}?${query}`);
    if (asked === state.barrierAsked) drawBarrier(response.body.barrier);
  } catch (error) {
    if (asked === state.barrierAsked && error.status !== 401) showMessage(`Your levels: ${describe(error)}`);
  }
}

// Dragging a TP or SL line moves that level and asks again (at most every 120 ms while moving).
function setupLevelDragging() {
  const element = $("chart");
  let dragging = null;
  let pending = null;
  const near = (y) => {
    for (const [name, line] of Object.entries(state.barrierLines)) {
      const at = charts.candles.priceToCoordinate(line.options().price);
      if (at !== null && Math.abs(at - y) <= 6) return name;
    }
    return null;
  };
  const localY = (event) => event.clientY - element.getBoundingClientRect().top;
  element.addEventListener("mousedown", (event) => {
    dragging = near(localY(event));
    if (!dragging) return;
    event.preventDefault();
    event.stopPropagation();
    charts.chart.applyOptions({ handleScroll: false, handleScale: false });
    element.classList.add("dragging");
  }, true);
  window.addEventListener("mousemove", (event) => {
    const y = localY(event);
    if (!dragging) {
      element.classList.toggle("dragging", near(y) !== null);
      return;
    }
    const dragged = charts.candles.coordinateToPrice(y);
    if (dragged === null || !state.barrier) return;
    // A level stays on its own side of the entry, at least 0.1 ATR away.
    const { close, atr } = state.prediction;
    const away = (dragging === "tp") === (state.barrier.side === "long") ? 1 : -1;
    const price = away > 0 ? Math.max(dragged, close + 0.1 * atr) : Math.min(dragged, close - 0.1 * atr);
    state.barrierLines[dragging].applyOptions({ price });
    if (pending !== null) clearTimeout(pending);
    const level = dragging === "tp" ? { tp_price: price } : { sl_price: price };
    pending = setTimeout(() => askBarrier(level), 120);
  });
  window.addEventListener("mouseup", () => {
    if (!dragging) return;
    dragging = null;
    element.classList.remove("dragging");
    charts.chart.applyOptions({ handleScroll: true, handleScale: true });
  });
}

function drawMarkers() {
  const all = [...state.tradeMarkers, ...state.signalMarkers].sort((a, b) => a.time - b.time);
  charts.markers.setMarkers(all);
}

async function loadPrediction(session) {
  const sym = encodeURIComponent(state.symbol);
  const query = `timeframe=${state.timeframe}`;
  try {
    const [prediction, signal] = await Promise.all([
      api(`/api/predict/${sym}?${query}`),
      api(`/api/signals/${sym}?${query}&strategy=${state.strategy}`),
    ]);
    if (session !== state.session) return;
    state.prediction = prediction.body;
    drawPrediction();
    drawSignal(signal.body);
  } catch (error) {
    if (session !== state.session || error.status === 401) return;
    $("prediction-note").textContent = `No prediction: ${describe(error)}`;
  }
}

// --- live stream ------------------------------------------------------------------------------

function closeSocket() {
  if (state.socket) {
    state.socket.onclose = null;
    state.socket.close();
    state.socket = null;
  }
}

function openSocket(session) {
  closeSocket();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = new URLSearchParams({ timeframe: state.timeframe, strategy: state.strategy });
  if (state.key) query.set("token", state.key); // browsers cannot set headers on a WebSocket
  const socket = new WebSocket(`${scheme}://${location.host}/ws/${encodeURIComponent(state.symbol)}?${query}`);
  state.socket = socket;
  setLive("connecting");
  socket.onopen = () => setLive("live", "live");
  socket.onmessage = (event) => onStreamMessage(session, JSON.parse(event.data));
  socket.onclose = (event) => {
    if (session !== state.session) return;
    state.socket = null;
    if (event.code === 4401) {
      authProblem(event.reason);
    } else if (event.code >= 4000 && event.code < 5000) {
      setLive("closed", "error");
      showMessage(`The live stream closed: ${event.reason} (code ${event.code}).`);
    } else {
      setLive("reconnecting");
      setTimeout(() => session === state.session && openSocket(session), RECONNECT_MS);
    }
  };
}

async function onStreamMessage(session, message) {
  if (session !== state.session) return;
  if (message.type === "prediction") {
    try {
      await appendNewBars(session);
    } catch (error) {
      if (error.status !== 401) showMessage(`Could not read the new bar: ${describe(error)}`);
      return;
    }
    if (session !== state.session) return;
    state.prediction = message.prediction;
    drawPrediction();
    drawSignal(message.signal);
    if (state.barrier) askBarrier(); // the same levels in ATR from the new close
    setLive(`live · ${utc(seconds(message.bar_time))}`, "live");
  } else if (message.type === "error") {
    $("prediction-note").textContent = `Stream: ${message.status} ${message.error.error}: ${message.error.message}`;
  }
}

// --- backtests --------------------------------------------------------------------------------

const isoDay = (s) => new Date(s * 1000).toISOString().slice(0, 10);

function setBacktestDefaults(candles) {
  if (!candles.length || $("bt-end").value) return;
  const last = candles[candles.length - 1].time;
  $("bt-end").value = isoDay(last);
  $("bt-start").value = isoDay(last - 10 * 86400);
}

function showJob(job) {
  const status = $("bt-status");
  status.dataset.status = job.status;
  if (job.status_url) status.dataset.jobUrl = job.status_url; // which job this page follows
  $("bt-progress").value = job.status === "done" ? 1 : job.progress;
  const attempt = job.attempts > 1 ? ` (attempt ${job.attempts})` : "";
  status.textContent = `${job.status} · ${job.phase} ${Math.round(job.progress * 100)}%${attempt}`;
}

async function runBacktest(event) {
  event.preventDefault();
  const session = state.session;
  const button = $("bt-run");
  button.disabled = true;
  $("bt-summary").hidden = true;
  const body = {
    symbol: state.symbol,
    timeframe: state.timeframe,
    strategy: $("bt-strategy").value,
    start_date: $("bt-start").value,
    end_date: $("bt-end").value,
    // Always a job: the page shows its progress and no request waits on a long simulation.
    params: { run_as_job: true, fee_rate: Number($("bt-fee").value) || 0 },
  };
  try {
    let { body: job } = await api("/api/backtest", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    showJob(job);
    while (job.status === "queued" || job.status === "running") {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      job = (await api(job.status_url)).body;
      showJob(job);
    }
    if (job.status === "done") showBacktestResult(job.result, session);
    else $("bt-status").textContent = `${job.status}: ${job.error ? job.error.message : "no result"}`;
  } catch (error) {
    $("bt-status").dataset.status = "error";
    $("bt-status").textContent = `Backtest refused: ${describe(error)}`;
  } finally {
    button.disabled = false;
  }
}

function strictlyAscending(times, values) {
  // The equity curve may repeat a bucket time; the chart needs each time once (keep the last).
  const points = new Map();
  times.forEach((t, i) => points.set(seconds(t), values[i]));
  return [...points].sort((a, b) => a[0] - b[0]).map(([time, value]) => ({ time, value }));
}

function showBacktestResult(result, session) {
  const stats = result.metrics.overall;
  $("bt-total-r").textContent = `${fmt(stats.total_r, 2)}R`;
  $("bt-total-r").dataset.value = String(stats.total_r);
  $("bt-trades").textContent = `${stats.n_trades} (${stats.n_wins} won)`;
  $("bt-win-rate").textContent = stats.win_rate === null ? "–" : `${fmt(stats.win_rate * 100, 1)}%`;
  $("bt-expectancy").textContent = stats.expectancy_r === null ? "–" : `${fmt(stats.expectancy_r, 3)}R`;
  $("bt-drawdown").textContent = `${fmt(stats.max_drawdown_r, 2)}R`;
  $("bt-model").textContent = result.model_version;
  $("bt-summary").hidden = false;
  $("bt-status").textContent = `done · ${stats.n_trades} trades · ${fmt(stats.total_r, 2)}R over ${result.bars} bars`;
  charts.equity.setData(strictlyAscending(result.equity.times, result.equity.equity_r));
  charts.drawdown.setData(strictlyAscending(result.equity.times, result.equity.drawdown_r));
  charts.equityChart.timeScale().fitContent();
  if (session !== state.session || result.request.symbol !== state.symbol.toUpperCase()) return;
  if (result.timeframe !== state.timeframe) return;
  // The trades also go on the candle chart where their entry bar is loaded.
  state.tradeMarkers = result.trades
    .filter((t) => state.bars.has(seconds(t.entry_time)))
    .map((t) => ({
      time: seconds(t.entry_time),
      position: t.side === "long" ? "belowBar" : "aboveBar",
      color: t.r >= 0 ? COLORS.up : COLORS.down,
      shape: t.side === "long" ? "arrowUp" : "arrowDown",
      text: `${t.r >= 0 ? "+" : ""}${fmt(t.r, 2)}R`,
    }));
  drawMarkers();
}

// --- models -----------------------------------------------------------------------------------

function skillText(card) {
  const skill = (card && card.served_skill) || {};
  return Object.entries(skill)
    .map(([h, v]) => `${h} ${v === null ? "n/a" : (v >= 0 ? "+" : "") + Number(v).toFixed(3)}`)
    .join(" · ");
}

function liveCoverage(version) {
  const horizons = (version && version.live && version.live.horizons) || [];
  const sides = horizons.flatMap((h) => [h.coverage_high, h.coverage_low]).filter((c) => c !== null);
  if (!sides.length) return "no outcomes yet";
  return `${fmt(Math.min(...sides), 3)}–${fmt(Math.max(...sides), 3)}`;
}

function retrainText(run) {
  if (!run) return "never";
  if (run.outcome) return `v${run.outcome.version} ${run.outcome.verdict} (${run.trigger})`;
  if (run.error) return `${run.status}: ${run.error.message}`;
  return `${run.status} · ${run.phase} ${Math.round(run.progress * 100)}% (${run.trigger})`;
}

function modelSetRow(entry) {
  const row = document.createElement("tr");
  row.dataset.modelSet = entry.model_set;
  const champion = entry.versions.find((v) => v.version === entry.champion);
  const challenger = entry.versions.find((v) => v.version === entry.challenger);
  const cells = [
    `${entry.model_set} (${entry.timeframe})`,
    champion ? `v${champion.version}` : "none",
    champion && champion.trained_through ? champion.trained_through.slice(0, 10) : "–",
    champion ? skillText(champion.card) : "–",
    champion ? liveCoverage(champion) : "–",
    challenger ? `v${challenger.version}: ${challenger.status_reason}` : "none",
    retrainText(entry.last_retrain),
  ];
  for (const text of cells) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.append(cell);
  }
  return row;
}

async function loadModels() {
  let running = false;
  try {
    const { body } = await api("/api/models");
    const rows = body.sets.map(modelSetRow);
    $("model-sets").querySelector("tbody").replaceChildren(...rows);
    running = body.sets.some((s) => s.last_retrain && !s.last_retrain.finished_at);
  } catch (error) {
    const row = document.createElement("tr");
    const cell = document.createElement("td");
    cell.colSpan = 7;
    cell.textContent = `Model sets unavailable: ${describe(error)}`;
    row.append(cell);
    $("model-sets").querySelector("tbody").replaceChildren(row);
  }
  clearTimeout(state.modelsTimer);
  state.modelsTimer = setTimeout(loadModels, running ? RETRAIN_POLL_MS : MODELS_POLL_MS);
}

// --- wiring -----------------------------------------------------------------------------------

async function connect(event) {
  if (event) event.preventDefault();
  state.session += 1;
  const session = state.session;
  state.key = $("api-key").value.trim();
  localStorage.setItem(KEY_STORAGE, state.key);
  state.symbol = $("symbol").value.trim().toUpperCase();
  state.timeframe = $("timeframe").value;
  state.strategy = $("strategy").value;
  state.signalMarkers = [];
  state.tradeMarkers = [];
  state.prediction = null;
  state.barrier = null;
  const params = new URLSearchParams({ symbol: state.symbol, timeframe: state.timeframe, strategy: state.strategy });
  history.replaceState(null, "", `${location.pathname}?${params}`);
  closeSocket();
  clearMessage();
  setLive("loading");
  try {
    await loadHistory(session);
  } catch (error) {
    if (session !== state.session || error.status === 401) return;
    setLive("offline", "error");
    showMessage(`Could not load ${state.symbol} ${state.timeframe} bars: ${describe(error)}`);
    return;
  }
  await loadPrediction(session);
  if (session === state.session) openSocket(session);
  loadModels();
}

function start() {
  const LC = window.LightweightCharts;
  if (!LC) {
    showMessage(
      "The chart library is missing: run `make dashboard-assets` where the engine runs " +
        "(it installs lightweight-charts from npm into the dashboard's static folder).",
    );
    return;
  }
  charts = createCharts(LC);
  const params = new URLSearchParams(location.search);
  $("api-key").value = localStorage.getItem(KEY_STORAGE) || "";
  if (params.get("symbol")) $("symbol").value = params.get("symbol");
  if (params.get("timeframe")) $("timeframe").value = params.get("timeframe");
  if (params.get("strategy")) $("strategy").value = params.get("strategy");
  $("connection").addEventListener("submit", connect);
  $("backtest-form").addEventListener("submit", runBacktest);
  $("barrier-form").addEventListener("submit", (event) => {
    event.preventDefault();
    askBarrier();
  });
  for (const id of ["barrier-side", "barrier-horizon", "barrier-tp", "barrier-sl"]) {
    $(id).addEventListener("change", () => askBarrier());
  }
  setupLevelDragging();
  window.dashboard = { state, charts }; // for the browser tests and the console
  connect();
}

document.addEventListener("DOMContentLoaded", start);
