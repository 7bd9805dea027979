"""Turning model outputs into trade signals; shared by the API and (later) the backtester."""
