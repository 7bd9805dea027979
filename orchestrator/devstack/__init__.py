"""Local stack management for `make` and the test suite: private MariaDB and the wheel's Triton."""
