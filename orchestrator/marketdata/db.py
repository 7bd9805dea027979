"""asyncmy pool wrapper: timeouts on acquire and on every query, and readable failures.

The pool must be created inside the running event loop (asyncmy binds it to the loop), so
`Database.connect` is awaited from the app lifespan or a CLI's `asyncio.run`.

Every driver failure that means "the server is away, restarting, overloaded or refusing writes
for now" leaves this module as `DatabaseUnavailableError` (a 503 and exit code 3, never a 500),
whichever path hit it: acquiring, querying, beginning, committing or rolling back. A connection
that saw such a failure is closed, never pooled again, so the pool heals by reconnecting once
the server is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncmy
from asyncmy.connection import Connection
from asyncmy.errors import Error as MySQLError
from asyncmy.errors import InterfaceError, InternalError

from orchestrator.errors import ServiceUnavailableError
from orchestrator.settings import DatabaseSettings

# asyncmy logs server notes (e.g. INSERT IGNORE duplicates) as warnings; they are expected.
logging.getLogger("asyncmy").setLevel(logging.ERROR)
log = logging.getLogger(__name__)

# Every session works in UTC so DATETIME values mean the same thing everywhere.
_INIT_COMMAND = "SET time_zone = '+00:00'"

# Server and client error codes that say "not now" rather than "this statement is wrong": the
# same statement can succeed later (or on another connection), so callers get a 503 / a retry.
UNAVAILABLE_CODES = frozenset(
    {
        # the server is out of memory, connections or threads
        1037, 1038, 1040, 1041, 1135, 1203, 1226, 1637,
        # handshake trouble, host blocked after connection errors
        1043, 1129,
        # shutting down; our connection or statement was killed or aborted
        1053, 1077, 1079, 1080, 1152, 1184, 1317, 1927,
        # network errors the server saw on our connection
        1154, 1156, 1157, 1158, 1159, 1160, 1161,
        # lock wait timeout and deadlock (InnoDB rolled the transaction back)
        1205, 1213, 1614,
        # a COMMIT or ROLLBACK failed inside the storage engine
        1180, 1181,
        # read-only: --read-only, a read-only server mode or transaction (a failover in progress)
        1290, 1792, 1836,
        # statement time limits: MariaDB max_statement_time, MySQL max_execution_time
        1969, 3024,
        # MySQL 8: the server closed an idle connection (wait_timeout)
        4031,
        # client side: cannot connect, server gone, connection lost, out of sync, bad packet
        2000, 2001, 2002, 2003, 2004, 2005, 2006, 2008, 2011, 2012, 2013, 2014, 2026, 2027,
        2048, 2055,
    }
)  # fmt: skip


# InnoDB chose this transaction as a deadlock victim and rolled it back: the whole transaction
# can run again at once (Database.atomic does, a few times). A lock wait timeout (1205) is not
# retried: it has already waited innodb_lock_wait_timeout, and another wait helps no one.
CONFLICT_CODES = frozenset({1213})


def error_code(exc: BaseException) -> int:
    """The MySQL error number of a driver exception; 0 when it carries none."""
    if isinstance(exc, MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return 0


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot serve us right now (as opposed to a bad statement).

    Interface errors ("Not connected") and internal errors (a packet out of sequence) mean the
    connection itself is unusable; socket errors, EOF and timeouts mean the server is away."""
    if isinstance(exc, DatabaseUnavailableError):
        return True
    if isinstance(exc, InterfaceError | InternalError):
        return True
    if isinstance(exc, MySQLError):
        return error_code(exc) in UNAVAILABLE_CODES
    # OSError covers ConnectionError and TimeoutError; IncompleteReadError is an EOFError.
    return isinstance(exc, OSError | EOFError)


class DatabaseUnavailableError(ServiceUnavailableError):
    """The database cannot be reached or did not answer in time (the API answers 503)."""

    title = "Database unavailable"

    def __init__(self, settings: DatabaseSettings, reason: str) -> None:
        self.settings = settings
        self.address = settings.address
        self.reason = reason
        super().__init__(
            f"MariaDB/MySQL at {settings.address} (database {settings.database!r}, user "
            f"{settings.user!r}) is unavailable: {reason}. Start the private instance with "
            "`make db`, or point MYSQL_HOST/MYSQL_PORT/MYSQL_USER/MYSQL_PASSWORD/MYSQL_DATABASE "
            "at a running server."
        )


class TransactionConflictError(DatabaseUnavailableError):
    """InnoDB rolled our transaction back to break a deadlock (a 503 when it persists after
    Database.atomic's retries)."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MySQLError) and exc.args:
        code = error_code(exc)
        text = str(exc.args[-1]) or type(exc).__name__
        return f"({code}) {text}" if code else text
    return str(exc) or type(exc).__name__


class Database:
    def __init__(self, pool: Any, settings: DatabaseSettings) -> None:
        self._pool = pool
        self.settings = settings
        # symbol -> (monotonic time read, SymbolInfo): the serving hot path reads it per request.
        self.symbol_cache: dict[str, tuple[float, Any]] = {}
        # (symbol, timeframe) -> (time read, whether bars are stored at that timeframe)
        self.stored_cache: dict[tuple[str, Any], tuple[float, bool]] = {}

    @classmethod
    async def connect(cls, settings: DatabaseSettings) -> Database:
        try:
            pool = await asyncio.wait_for(
                asyncmy.create_pool(
                    host=settings.host,
                    port=settings.port,
                    user=settings.user,
                    password=settings.password,
                    database=settings.database,
                    minsize=settings.pool_min_size,
                    maxsize=settings.pool_max_size,
                    connect_timeout=settings.connect_timeout_s,
                    init_command=_INIT_COMMAND,
                    # Reads see every committed row without a COMMIT of their own; writes open an
                    # explicit transaction (transaction()).
                    autocommit=True,
                    pool_recycle=600,
                    # Enables MariaDB's binary bulk protocol for executemany (2x faster upserts).
                    stmt_cache_size=32,
                ),
                timeout=settings.connect_timeout_s + 1,
            )
        except (OSError, EOFError, MySQLError) as exc:
            raise DatabaseUnavailableError(settings, _describe(exc)) from exc
        return cls(pool, settings)

    def unavailable(self, exc: BaseException) -> DatabaseUnavailableError:
        """`exc` as the error callers handle (503, exit code 3, a writer's retry)."""
        if isinstance(exc, DatabaseUnavailableError):
            return exc
        if isinstance(exc, TimeoutError):
            return DatabaseUnavailableError(self.settings, "the server did not answer in time")
        if error_code(exc) in CONFLICT_CODES:
            return TransactionConflictError(self.settings, _describe(exc))
        return DatabaseUnavailableError(self.settings, _describe(exc))

    async def close(self, timeout_s: float = 5.0) -> None:
        self._pool.close()
        try:
            await asyncio.wait_for(self._pool.wait_closed(), timeout_s)
        except TimeoutError:
            self._pool.terminate()  # connections still busy (e.g. after a cancellation)

    async def _acquire(self) -> Connection:
        """A pooled connection; asyncmy's acquire has no timeout of its own, so add one. Any
        failure to get one (the pool reconnects here after an outage) is an unavailability."""
        try:
            conn: Connection = await asyncio.wait_for(
                self._pool.acquire(), timeout=self.settings.acquire_timeout_s
            )
        except TimeoutError as exc:
            raise DatabaseUnavailableError(
                self.settings,
                f"no free connection within {self.settings.acquire_timeout_s:g} s "
                f"(pool size {self.settings.pool_max_size})",
            ) from exc
        except (OSError, EOFError, MySQLError) as exc:
            raise self.unavailable(exc) from exc
        return conn

    async def _release(self, conn: Connection, reusable: bool) -> None:
        """Back to the pool only in a known state; otherwise closed (the server rolls back)."""
        keep = False
        try:
            with contextlib.suppress(Exception):  # the rollback failed: the connection is broken
                if reusable and conn.get_transaction_status():
                    await conn.rollback()
                keep = reusable
        finally:
            if not keep:
                conn.close()
            self._pool.release(conn)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection for statements run directly on it; their connection failures
        surface as DatabaseUnavailableError like those of fetchall."""
        conn = await self._acquire()
        reusable = False
        try:
            yield conn
            reusable = True
        except MySQLError as exc:
            if is_unavailable(exc):
                raise self.unavailable(exc) from exc
            reusable = True  # a plain SQL error leaves the connection in a known state
            raise
        except (OSError, EOFError) as exc:
            # After an I/O error or a timeout the server may still be running our statement.
            raise self.unavailable(exc) from exc
        finally:
            await self._release(conn, reusable)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """Commits when the block succeeds. On a SQL error the transaction is rolled back and the
        connection reused; on anything else (cancellation, a timeout, the server gone) the
        connection is closed and the server rolls the transaction back."""
        async with self.connection() as conn:
            await conn.begin()
            yield conn
            await conn.commit()

    async def atomic[T](
        self, work: Callable[[Connection], Awaitable[T]], *, attempts: int = 4
    ) -> T:
        """Runs `work` in one transaction, again from the start when InnoDB rolls it back as a
        deadlock victim (writers locking the same rows in another order, e.g. replicas
        registering a version at once); `work` must hold no state outside the transaction."""
        for attempt in range(1, attempts + 1):
            try:
                async with self.transaction() as conn:
                    return await work(conn)
            except TransactionConflictError as exc:
                if attempt == attempts:
                    raise
                log.info("transaction rolled back (%s); running it again", exc.reason)
                await asyncio.sleep(0.005 * attempt * (1 + random.random()))
        raise AssertionError("unreachable")

    async def fetchall(
        self, sql: str, params: Sequence[Any], timeout_s: float | None = None
    ) -> list[tuple[Any, ...]]:
        limit_s = timeout_s if timeout_s is not None else self.settings.query_timeout_s
        async with self.connection() as conn:
            try:
                async with asyncio.timeout(limit_s), conn.cursor() as cur:
                    await cur.execute(sql, params)
                    rows: list[tuple[Any, ...]] = list(await cur.fetchall())
            except TimeoutError:
                raise DatabaseUnavailableError(
                    self.settings, f"query did not finish within {limit_s:g} s"
                ) from None
            return rows

    async def ping(self) -> None:
        await self.fetchall("SELECT 1", (), timeout_s=2.0)


@dataclass(frozen=True)
class Retry:
    """Retries an operation while the database is unavailable, with capped exponential backoff
    and jitter (so writers that failed together do not come back together).

    `give_up_after_s` bounds one outage (the time since the first failure in a row; the last try
    falls on the limit): None retries forever (a long-running process), 0 does not retry at all."""

    give_up_after_s: float | None
    first_delay_s: float = 0.5
    max_delay_s: float = 10.0

    def delay_s(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1, 2, ...): half fixed, half random."""
        ceiling = min(self.max_delay_s, self.first_delay_s * 2.0 ** min(attempt - 1, 30))
        return ceiling * (0.5 + random.random() / 2)

    async def run[T](
        self, operation: Callable[[], Awaitable[T]], *, what: str, log: logging.Logger
    ) -> T:
        attempt = 0
        outage_since = 0.0
        while True:
            try:
                result = await operation()
            except DatabaseUnavailableError as exc:
                now = time.monotonic()
                attempt += 1
                if attempt == 1:
                    outage_since = now
                waited_s = now - outage_since
                delay_s = self.delay_s(attempt)
                limit = self.give_up_after_s
                if limit is not None:
                    if waited_s >= limit:
                        if attempt == 1:
                            raise
                        raise DatabaseUnavailableError(
                            exc.settings,
                            f"{exc.reason} (still unavailable after retrying {what} for "
                            f"{waited_s:.1f} s)",
                        ) from exc
                    delay_s = min(delay_s, limit - waited_s)  # a last try at the limit
                log.warning(
                    "%s: database at %s unavailable (%s); retry %d in %.1f s",
                    what,
                    exc.address,
                    exc.reason,
                    attempt,
                    delay_s,
                )
                await asyncio.sleep(delay_s)
                continue
            if attempt:
                log.warning("%s: database back after %.1f s", what, time.monotonic() - outage_since)
            return result
