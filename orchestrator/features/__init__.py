"""The one feature pipeline: training (export/) and serving (orchestrator/) both import it."""
