"""The Litestar service the Express gateway calls."""
