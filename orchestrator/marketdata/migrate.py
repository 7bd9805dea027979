"""Applies the versioned SQL migrations in `migrations/` exactly once each.

MariaDB commits DDL implicitly, so each migration is recorded right after it runs and a named
lock keeps two migrators (e.g. `make db` and a starting service) from racing.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from importlib import resources

from orchestrator.errors import EngineError
from orchestrator.marketdata.db import Database

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_TIMEOUT_S = 30


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        without_comments = "\n".join(
            line for line in self.sql.splitlines() if not line.lstrip().startswith("--")
        )
        return [s.strip() for s in without_comments.split(";") if s.strip()]


class MigrationError(EngineError):
    """The database's migration history disagrees with the files shipped in this version, or
    another process holds the migration lock (a deployment fault: 500, exit 1)."""


def available_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("orchestrator.marketdata.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return ordered(found)


def ordered(found: list[Migration]) -> list[Migration]:
    """`found` by version; two files with one version are refused (one would never run)."""
    found = sorted(found, key=lambda m: m.version)
    for before, after in itertools.pairwise(found):
        if before.version == after.version:
            raise MigrationError(
                f"two migrations share version {after.version:04d} ({before.name}, {after.name});"
                " number the newer one after the last"
            )
    return found


async def migrate(db: Database) -> list[Migration]:
    """Applies pending migrations; returns the ones applied by this call."""
    applied_now: list[Migration] = []
    async with db.connection() as conn, conn.cursor() as cur:
        await cur.execute("SELECT GET_LOCK('trading_ml_migrations', %s)", (_LOCK_TIMEOUT_S,))
        (locked,) = await cur.fetchone()
        if locked != 1:
            raise MigrationError("another process holds the migration lock for over 30 s")
        try:
            await cur.execute("SHOW TABLES LIKE 'schema_migrations'")
            if not await cur.fetchall():
                await cur.execute(
                    "CREATE TABLE schema_migrations ("
                    " version INT NOT NULL PRIMARY KEY, name VARCHAR(100) NOT NULL,"
                    " checksum CHAR(64) NOT NULL,"
                    " applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"
                )
            await cur.execute("SELECT version, checksum FROM schema_migrations")
            done = {int(v): c for v, c in await cur.fetchall()}
            for migration in available_migrations():
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:04d}_{migration.name} was edited after "
                            "being applied; add a new migration instead of changing an old one"
                        )
                    continue
                for statement in migration.statements():
                    await cur.execute(statement)
                await cur.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
                await conn.commit()
                applied_now.append(migration)
        finally:
            await cur.execute("SELECT RELEASE_LOCK('trading_ml_migrations')")
    return applied_now


async def current_version(db: Database) -> int:
    rows = await db.fetchall("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", ())
    return int(rows[0][0])
