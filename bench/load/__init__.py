"""`make load`: locust against two API replicas with mixed REST and WebSocket traffic."""
