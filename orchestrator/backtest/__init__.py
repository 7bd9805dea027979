"""R-multiple backtester: a numba trade simulator over bars, trade metrics and an equity plot."""
