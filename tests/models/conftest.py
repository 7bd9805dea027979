"""Model fixtures live in tests/conftest.py (the API tests use them too)."""

from tests.conftest import TrainedRepository

__all__ = ["TrainedRepository"]
