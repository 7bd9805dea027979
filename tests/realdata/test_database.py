"""`real-data` writes into a database of its own: on a server the user did not start, it is
created when the user may, and otherwise the message names the grant to ask for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from orchestrator.devstack.mariadb import DatabaseSetupError, PrivateMariaDB, ensure_database
from orchestrator.devstack.process import free_ports
from orchestrator.settings import DatabaseSettings


@pytest.fixture(scope="module")
def private_mariadb(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PrivateMariaDB, int]]:
    """A MariaDB this checkout's `make db` does not own (its own run directory)."""
    (port,) = free_ports(1)
    mariadb = PrivateMariaDB(port=port, run_dir=Path(tmp_path_factory.mktemp("real-db")))
    mariadb.start()
    yield mariadb, port
    mariadb.stop()


def _user(mariadb: PrivateMariaDB, name: str, grant: str | None) -> None:
    for host in ("localhost", "127.0.0.1"):
        mariadb.admin(f"CREATE USER IF NOT EXISTS '{name}'@'{host}' IDENTIFIED BY '{name}-pw'")
        if grant:
            mariadb.admin(f"GRANT ALL PRIVILEGES ON `{grant}`.* TO '{name}'@'{host}'")


def test_a_missing_database_is_created_when_the_user_may(
    private_mariadb: tuple[PrivateMariaDB, int],
) -> None:
    mariadb, port = private_mariadb
    _user(mariadb, "creator", grant="real\\_%")
    settings = DatabaseSettings(
        port=port, user="creator", password="creator-pw", database="real_bars"
    )
    assert "(created database real_bars)" in ensure_database(settings)
    assert "(database real_bars)" in ensure_database(settings)  # there now: used as it is


def test_a_database_the_user_may_not_create_is_explained(
    private_mariadb: tuple[PrivateMariaDB, int],
) -> None:
    mariadb, port = private_mariadb
    _user(mariadb, "reader", grant=None)
    settings = DatabaseSettings(port=port, user="reader", password="reader-pw")
    with pytest.raises(DatabaseSetupError) as caught:
        ensure_database(msgspec.structs.replace(settings, database="trading_real"))
    message = str(caught.value)
    assert "GRANT ALL ON `trading_real`.* TO 'reader'@'localhost'" in message
    assert "or choose another database that user may create or use" in message
