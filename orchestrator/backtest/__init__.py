"""R-multiple backtester: a numba trade simulator over bars, trade metrics and an equity plot
(engine, metrics, plot); backtests of the Triton-served models over stored history (predictions,
runner), walk-forward retraining for out-of-sample results (walkforward) and the CLI (command)."""
