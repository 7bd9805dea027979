"""Deterministic synthetic market data for demos, tests and benchmarks."""
