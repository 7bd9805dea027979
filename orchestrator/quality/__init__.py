"""Live model quality: what was served against what happened once each horizon elapsed.

- `tracker`: keeps served predictions until their horizons pass and resolves them from the bars;
- `totals`: what an outcome adds, the running sums, the report and its Prometheus gauges;
- `store`: the totals in Redis, each outcome counted once across replicas (memory without it);
- `adaptive`: adaptive conformal levels for the served intervals, from those totals;
- `report`: the `model-report` command's client for a running API's /api/stats.
"""
