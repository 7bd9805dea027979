"""What the orchestrator knows about the served models: names and feature-spec compatibility."""
