from __future__ import annotations

import pytest

from orchestrator.marketdata.db import Database
from orchestrator.marketdata.migrate import (
    Migration,
    MigrationError,
    available_migrations,
    current_version,
    migrate,
    ordered,
)


async def test_schema_is_at_latest_version(db: Database) -> None:
    assert await current_version(db) == available_migrations()[-1].version


async def test_migrate_twice_applies_nothing(db: Database) -> None:
    assert await migrate(db) == []


async def test_bar_columns_have_exact_types(db: Database) -> None:
    rows = await db.fetchall(
        "SELECT column_name, column_type FROM information_schema.columns"
        " WHERE table_schema = DATABASE() AND table_name = 'bars' ORDER BY ordinal_position",
        (),
    )
    types = {name: kind for name, kind in rows}
    assert types["ts"] == "datetime"
    for price in ("open", "high", "low", "close"):
        assert types[price] == "decimal(20,10)"
    assert types["volume"] == "decimal(28,8)"


async def test_primary_key_serves_latest_n_and_ranges(db: Database) -> None:
    rows = await db.fetchall(
        "SELECT index_name, column_name FROM information_schema.statistics"
        " WHERE table_schema = DATABASE() AND table_name = 'bars'"
        " ORDER BY index_name, seq_in_index",
        (),
    )
    primary = [column for index, column in rows if index == "PRIMARY"]
    assert primary == ["symbol", "timeframe", "ts"]
    assert ("ix_bars_ts", "ts") in rows
    plan = await db.fetchall(
        "EXPLAIN SELECT ts FROM bars WHERE symbol = 'BTCUSD' AND timeframe = '5m'"
        " ORDER BY ts DESC LIMIT 10",
        (),
    )
    assert plan[0][5] == "PRIMARY"  # `key` column of EXPLAIN


async def test_edited_migration_is_refused(db: Database) -> None:
    original = available_migrations()[0]
    async with db.transaction() as conn, conn.cursor() as cur:
        await cur.execute(
            "UPDATE schema_migrations SET checksum = %s WHERE version = %s",
            ("0" * 64, original.version),
        )
    try:
        with pytest.raises(MigrationError, match="edited after being applied"):
            await migrate(db)
    finally:
        async with db.transaction() as conn, conn.cursor() as cur:
            await cur.execute(
                "UPDATE schema_migrations SET checksum = %s WHERE version = %s",
                (original.checksum, original.version),
            )


def test_statements_split_without_comments() -> None:
    migration = Migration(
        9, "x", "-- a comment; with a semicolon\nCREATE TABLE a (b INT);\n\nSELECT 1;"
    )
    assert migration.statements() == ["CREATE TABLE a (b INT)", "SELECT 1"]


def test_two_migrations_with_one_version_are_refused() -> None:
    first, second = Migration(5, "a", "SELECT 1"), Migration(5, "b", "SELECT 2")
    with pytest.raises(MigrationError, match="share version 0005"):
        ordered([second, first])
    assert [m.version for m in ordered([Migration(2, "b", ""), Migration(1, "a", "")])] == [1, 2]
