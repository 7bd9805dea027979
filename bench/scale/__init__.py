"""Scale benchmark: bar-close sweep, cold start and memory per state, 1,000 to 10,000 symbols."""
