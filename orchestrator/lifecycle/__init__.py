"""Model sets over time: the registry, champion and challenger, promotion and rollback."""
