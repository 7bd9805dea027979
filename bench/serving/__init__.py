"""The serving benchmark (`make bench-serving`, `python -m bench.serving`): the engine against a
naive seed-style baseline (bench/baseline_app.py). What it measures and how is described in
__main__.py; each module's docstring says which part it holds.
"""
