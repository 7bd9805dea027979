"""Backtest and walk-forward runs as jobs: recorded in MySQL (the durable record every replica
reads), carried to workers by SAQ on Redis, run by `python -m orchestrator worker`.

The API imports `errors`, `settings`, `runs`, `queue` and `service`; only `worker` imports the
backtest and training machinery."""
