"""Driver failures that mean "not now" leave Database as DatabaseUnavailableError (a 503, a
writer's retry) on every path, broken connections never go back to the pool, and SQL errors
stay what they are; against the suite's real MariaDB, with real driver exceptions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import pytest
from asyncmy.connection import Connection
from asyncmy.errors import IntegrityError, InterfaceError, OperationalError, ProgrammingError

from orchestrator.marketdata.db import (
    Database,
    DatabaseUnavailableError,
    Retry,
    TransactionConflictError,
    is_unavailable,
)
from orchestrator.marketdata.store import BarStore, SymbolInfo
from orchestrator.settings import DatabaseSettings
from tests.conftest import until

log = logging.getLogger("tests.db")


@pytest.mark.parametrize(
    "exc",
    [
        OperationalError(1040, "Too many connections"),
        OperationalError(1053, "Server shutdown in progress"),
        OperationalError(1205, "Lock wait timeout exceeded; try restarting transaction"),
        OperationalError(1213, "Deadlock found when trying to get lock"),
        OperationalError(1290, "The MariaDB server is running with the --read-only option"),
        OperationalError(1927, "Connection was killed"),
        OperationalError(2002, "Can't connect to local server through socket"),
        OperationalError(2003, "Can't connect to MySQL server"),
        OperationalError(2006, "MySQL server has gone away"),
        OperationalError(2013, "Lost connection to MySQL server during query"),
        OperationalError(2055, "Lost connection to server at 'reading initial packet'"),
        OperationalError(4031, "The client was disconnected by the server because of inactivity"),
        InterfaceError(0, "Not connected"),
        ConnectionResetError(104, "Connection reset by peer"),
        asyncio.IncompleteReadError(b"", 4),
        TimeoutError(),
    ],
    ids=lambda exc: f"{type(exc).__name__}-{exc.args[0] if exc.args else ''}",
)
def test_the_server_being_away_busy_or_read_only_counts_as_unavailable(exc: Exception) -> None:
    assert is_unavailable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ProgrammingError(1064, "You have an error in your SQL syntax"),
        ProgrammingError(1146, "Table 'trading.nope' doesn't exist"),
        IntegrityError(1062, "Duplicate entry"),
        OperationalError(1045, "Access denied for user"),
        ValueError("a bug"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_bad_statements_and_bugs_are_not_unavailability(exc: Exception) -> None:
    assert not is_unavailable(exc)


async def _connection_id(db: Database) -> int:
    return int((await db.fetchall("SELECT CONNECTION_ID()", ()))[0][0])


async def _kill(settings: DatabaseSettings, connection_id: int) -> None:
    """Kills a connection from another one, as a server restart or an admin would."""
    other = await Database.connect(msgspec.structs.replace(settings, pool_max_size=1))
    try:
        async with other.connection() as conn, conn.cursor() as cur:
            await cur.execute("KILL CONNECTION %s", (connection_id,))
    finally:
        await other.close()


@pytest.fixture
async def one_connection(db_settings: DatabaseSettings) -> AsyncIterator[Database]:
    """A pool of one, so the test knows which connection the next statement uses."""
    database = await Database.connect(msgspec.structs.replace(db_settings, pool_max_size=1))
    yield database
    await database.close()


async def test_a_statement_on_a_killed_connection_is_unavailable_and_the_pool_heals(
    one_connection: Database,
) -> None:
    db = one_connection
    before = await _connection_id(db)
    with pytest.raises(DatabaseUnavailableError, match=r"\(1927\) Connection was killed"):
        async with db.connection() as conn, conn.cursor() as cur:
            await cur.execute("KILL CONNECTION_ID()")
    after = await _connection_id(db)  # a fresh connection, no restart of anything
    assert after != before


async def test_a_commit_on_a_connection_broken_after_its_statements_is_unavailable(
    clean_db: Database, db_settings: DatabaseSettings
) -> None:
    """The reported 500: the COMMIT of a write whose connection broke meanwhile. It becomes a
    DatabaseUnavailableError and nothing of the transaction is kept."""

    async def write_then_lose_the_connection() -> None:
        async with clean_db.transaction() as conn:
            async with conn.cursor() as cur:
                await cur.execute(
                    "INSERT INTO symbols (symbol, asset_class, tick_size)"
                    " VALUES ('KILLUSD', 'crypto', 0.01)"
                )
                await cur.execute("SELECT CONNECTION_ID()")
                (connection_id,) = (await cur.fetchall())[0]
            await _kill(db_settings, int(connection_id))

            async def gone() -> bool:
                rows = await clean_db.fetchall(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s",
                    (connection_id,),
                )
                return rows[0][0] == 0

            await until(gone, what="the server to drop the killed connection")

    with pytest.raises(DatabaseUnavailableError) as caught:
        await write_then_lose_the_connection()
    assert isinstance(caught.value.__cause__, InterfaceError | OperationalError)
    assert [s.symbol for s in await BarStore(clean_db).list_symbols()] == []


async def test_a_lock_wait_timeout_is_unavailable_and_rolls_the_write_back(
    clean_db: Database,
) -> None:
    store = BarStore(clean_db)
    await store.upsert_symbol(SymbolInfo("LOCKUSD", "crypto", 0.01))

    async def update_the_locked_row() -> None:
        async with clean_db.transaction() as waiter, waiter.cursor() as cur:
            await cur.execute("SET SESSION innodb_lock_wait_timeout = 1")
            await cur.execute("UPDATE symbols SET description = 'x' WHERE symbol = 'LOCKUSD'")

    async with clean_db.transaction() as holder, holder.cursor() as cur:
        await cur.execute("SELECT * FROM symbols WHERE symbol = 'LOCKUSD' FOR UPDATE")
        with pytest.raises(DatabaseUnavailableError, match=r"\(1205\) Lock wait timeout"):
            await update_the_locked_row()
    assert (await store.get_symbol("LOCKUSD")).description == ""


async def test_a_deadlock_victim_runs_its_transaction_again(clean_db: Database) -> None:
    """Two writers lock two rows in opposite orders: InnoDB rolls one back (1213) and `atomic`
    runs that one again from the start, so both writes land and neither caller sees an error."""
    store = BarStore(clean_db)
    for symbol in ("AAAUSD", "BBBUSD"):
        await store.upsert_symbol(SymbolInfo(symbol, "crypto", 0.01))
    locked = {"AAAUSD": asyncio.Event(), "BBBUSD": asyncio.Event()}
    attempts: dict[str, int] = {"AAAUSD": 0, "BBBUSD": 0}

    def writer(first: str, second: str) -> Callable[[Connection], Awaitable[None]]:
        async def work(conn: Connection) -> None:
            attempts[first] += 1
            async with conn.cursor() as cur:
                sql = "UPDATE symbols SET description = %s WHERE symbol = %s"
                await cur.execute(sql, (f"by {first}", first))
                locked[first].set()
                await locked[second].wait()
                await cur.execute(sql, (f"by {first}", second))

        return work

    await asyncio.gather(
        clean_db.atomic(writer("AAAUSD", "BBBUSD")), clean_db.atomic(writer("BBBUSD", "AAAUSD"))
    )
    assert sorted(attempts.values()) == [1, 2]  # one victim, run once more
    descriptions = {(await store.get_symbol(s)).description for s in ("AAAUSD", "BBBUSD")}
    assert len(descriptions) == 1  # both rows by the writer that committed last


async def test_a_deadlock_that_persists_is_a_503(clean_db: Database) -> None:
    async def always_a_victim(conn: Connection) -> None:
        raise clean_db.unavailable(OperationalError(1213, "Deadlock found"))

    with pytest.raises(TransactionConflictError, match=r"\(1213\) Deadlock") as caught:
        await clean_db.atomic(always_a_victim, attempts=2)
    assert isinstance(caught.value, DatabaseUnavailableError)


async def test_a_statement_time_limit_is_unavailable(one_connection: Database) -> None:
    with pytest.raises(DatabaseUnavailableError, match="max_statement_time"):
        await one_connection.fetchall(
            "SET STATEMENT max_statement_time = 0.05 FOR SELECT SLEEP(2)", ()
        )
    assert await one_connection.fetchall("SELECT 1", ()) == [(1,)]


async def test_a_sql_error_stays_a_sql_error_and_keeps_its_connection(
    one_connection: Database,
) -> None:
    db = one_connection
    before = await _connection_id(db)
    with pytest.raises(ProgrammingError):
        await db.fetchall("SELECT * FROM no_such_table", ())

    async def read_then_fail() -> None:
        async with db.transaction() as conn, conn.cursor() as cur:
            await cur.execute("SELECT 1")
            await cur.execute("SELEKT 1")

    with pytest.raises(ProgrammingError):
        await read_then_fail()
    assert await _connection_id(db) == before  # rolled back and pooled again, not closed


async def test_no_server_at_all_is_unavailable(db_settings: DatabaseSettings) -> None:
    from orchestrator.devstack.process import free_ports

    (port,) = free_ports(1)
    with pytest.raises(DatabaseUnavailableError, match=r"\(2003\) Can't connect"):
        await Database.connect(msgspec.structs.replace(db_settings, port=port))


# --- retrying writers ----------------------------------------------------------------------


def _failing(
    settings: DatabaseSettings, failures: int
) -> tuple[list[int], Callable[[], Awaitable[str]]]:
    calls: list[int] = []

    async def operation() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise DatabaseUnavailableError(settings, "(2003) Can't connect")
        return "written"

    return calls, operation


async def test_retry_waits_out_an_outage_with_growing_delays(
    db_settings: DatabaseSettings, caplog: pytest.LogCaptureFixture
) -> None:
    calls, operation = _failing(db_settings, 3)
    retry = Retry(give_up_after_s=None, first_delay_s=0.01, max_delay_s=0.02)
    with caplog.at_level(logging.WARNING, logger="tests.db"):
        assert await retry.run(operation, what="batch", log=log) == "written"
    assert len(calls) == 4
    lines = [r.getMessage() for r in caplog.records]
    assert sum("unavailable ((2003) Can't connect); retry" in line for line in lines) == 3
    assert "database back after" in lines[-1]
    delays = [Retry(None, 0.5, 10.0).delay_s(n) for n in range(1, 9)]
    assert 0.25 <= delays[0] <= 0.5
    assert all(5.0 <= d <= 10.0 for d in delays[6:])  # capped


async def test_retry_gives_up_after_its_time_and_says_for_how_long(
    db_settings: DatabaseSettings,
) -> None:
    calls, operation = _failing(db_settings, 1000)
    retry = Retry(give_up_after_s=0.2, first_delay_s=0.02, max_delay_s=0.05)
    with pytest.raises(DatabaseUnavailableError, match="still unavailable after retrying batch"):
        await retry.run(operation, what="batch", log=log)
    assert len(calls) > 2
    calls, operation = _failing(db_settings, 1000)
    with pytest.raises(DatabaseUnavailableError):
        await Retry(give_up_after_s=0).run(operation, what="batch", log=log)
    assert len(calls) == 1
