"""Garbage-collection probe for the benchmarks (`make bench-scale-gc`)."""
