"""asyncmy pool wrapper: timeouts on acquire and on every query, and readable failures.

The pool must be created inside the running event loop (asyncmy binds it to the loop), so
`Database.connect` is awaited from the app lifespan or a CLI's `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncmy
from asyncmy.connection import Connection
from asyncmy.errors import Error as MySQLError

from orchestrator.settings import DatabaseSettings

# asyncmy logs server notes (e.g. INSERT IGNORE duplicates) as warnings; they are expected.
logging.getLogger("asyncmy").setLevel(logging.ERROR)

# Every session works in UTC so DATETIME values mean the same thing everywhere.
_INIT_COMMAND = "SET time_zone = '+00:00'"


class DatabaseUnavailableError(RuntimeError):
    """The database cannot be reached or did not answer in time."""

    def __init__(self, settings: DatabaseSettings, reason: str) -> None:
        self.address = settings.address
        super().__init__(
            f"MariaDB/MySQL at {settings.address} (database {settings.database!r}, user "
            f"{settings.user!r}) is unavailable: {reason}. Start the private instance with "
            "`make db`, or point MYSQL_HOST/MYSQL_PORT/MYSQL_USER/MYSQL_PASSWORD/MYSQL_DATABASE "
            "at a running server."
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MySQLError) and exc.args:
        return str(exc.args[-1])
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
        except (OSError, MySQLError, TimeoutError) as exc:
            raise DatabaseUnavailableError(settings, _describe(exc)) from exc
        return cls(pool, settings)

    async def close(self, timeout_s: float = 5.0) -> None:
        self._pool.close()
        try:
            await asyncio.wait_for(self._pool.wait_closed(), timeout_s)
        except TimeoutError:
            self._pool.terminate()  # connections still busy (e.g. after a cancellation)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection; asyncmy's acquire has no timeout of its own, so add one."""
        try:
            conn = await asyncio.wait_for(
                self._pool.acquire(), timeout=self.settings.acquire_timeout_s
            )
        except TimeoutError as exc:
            raise DatabaseUnavailableError(
                self.settings,
                f"no free connection within {self.settings.acquire_timeout_s:g} s "
                f"(pool size {self.settings.pool_max_size})",
            ) from exc
        except (OSError, MySQLError) as exc:
            raise DatabaseUnavailableError(self.settings, _describe(exc)) from exc
        healthy = True
        try:
            yield conn
        except BaseException as exc:
            # After a timeout, cancellation or I/O error the server may still be running our
            # statement: only a plain SQL error leaves the connection in a known state.
            healthy = isinstance(exc, MySQLError) and not _is_connection_error(exc)
            raise
        finally:
            if healthy:
                if conn.get_transaction_status():
                    await conn.rollback()
                self._pool.release(conn)
            else:
                conn.close()
                self._pool.release(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """Commits when the block succeeds; rolls back on any exception."""
        async with self.connection() as conn:
            await conn.begin()
            try:
                yield conn
            except Exception as exc:
                if not isinstance(exc, (TimeoutError, OSError)):
                    await conn.rollback()
                raise
            # On cancellation or a timeout a statement may still be in flight: the connection is
            # closed instead (see connection()), and the server rolls the transaction back.
            await conn.commit()

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
            except OSError as exc:
                raise DatabaseUnavailableError(self.settings, _describe(exc)) from exc
            except MySQLError as exc:
                if _is_connection_error(exc):
                    raise DatabaseUnavailableError(self.settings, _describe(exc)) from exc
                raise
            return rows

    async def ping(self) -> None:
        await self.fetchall("SELECT 1", (), timeout_s=2.0)


def _is_connection_error(exc: MySQLError) -> bool:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    return code in {2003, 2006, 2013, 2055}
