"""The model registry (MySQL): every version of every model set and where it stands.

A model set is the ensemble one timeframe is served by (`signal_ensemble`, `signal_ensemble_1h`,
...). Its versions move through:

    candidate --> challenger --> champion --> retired
        |             |                          |
        +--> rejected <+          rollback: back to champion

At most one champion and one challenger per set. Every move is one transaction that locks the
set's rows, checks the move is allowed from the state it finds, and appends an event (who, why),
so two replicas or a job and an admin racing cannot leave two champions behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import msgspec
from asyncmy.connection import Connection
from asyncmy.cursors import Cursor
from asyncmy.errors import Error as MySQLError

from orchestrator.errors import ConflictError, NotFoundError, ServiceUnavailableError
from orchestrator.marketdata.db import Database

NO_SUCH_TABLE = 1146  # MariaDB's error number for a missing table
Status = Literal["candidate", "challenger", "champion", "retired", "rejected"]
STATUSES: tuple[Status, ...] = get_args(Status)
# The moves allowed from each status (a rollback is retired -> champion).
MOVES: dict[Status, frozenset[Status]] = {
    "candidate": frozenset({"challenger", "champion", "rejected"}),
    "challenger": frozenset({"champion", "rejected"}),
    "champion": frozenset({"retired"}),
    "retired": frozenset({"champion"}),
    "rejected": frozenset(),
}

# What a version still holding the status another version takes becomes.
_DISPLACED: dict[Status, Status] = {"champion": "retired", "challenger": "rejected"}


class NewVersion(msgspec.Struct, frozen=True, kw_only=True):
    """What an export knows of the version it wrote."""

    model_set: str
    version: int
    timeframe: str
    symbols: list[str]
    feature_fingerprint: str
    trained_through: datetime | None
    data_from: datetime | None
    data_to: datetime | None
    metrics: dict[str, Any]  # the card's headline numbers (lifecycle/cards.card_metrics)


class ModelVersion(msgspec.Struct, frozen=True, kw_only=True):
    model_set: str
    version: int
    timeframe: str
    symbols: list[str]
    status: Status
    created_at: datetime
    trained_through: datetime | None
    data_from: datetime | None
    data_to: datetime | None
    feature_fingerprint: str
    metrics: dict[str, Any]
    decision: dict[str, Any] | None  # the promotion test's numbers (export/promotion.py)
    status_changed_at: datetime
    status_reason: str


class StatusEvent(msgspec.Struct, frozen=True, kw_only=True):
    model_set: str
    version: int
    from_status: Status | None
    to_status: Status
    at: datetime
    actor: str
    reason: str


_COLUMNS = (
    "model_set, version, timeframe, symbols, status, created_at, trained_through, data_from, "
    "data_to, feature_fingerprint, metrics, decision, status_changed_at, status_reason"
)


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None else None


def _naive(moment: datetime | None) -> datetime | None:
    """DATETIME columns hold UTC without a zone."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment is not None else None


def _version(row: Sequence[Any]) -> ModelVersion:
    return ModelVersion(
        model_set=row[0],
        version=int(row[1]),
        timeframe=row[2],
        symbols=msgspec.json.decode(row[3]),
        status=row[4],
        created_at=row[5].replace(tzinfo=UTC),
        trained_through=_utc(row[6]),
        data_from=_utc(row[7]),
        data_to=_utc(row[8]),
        feature_fingerprint=row[9],
        metrics=msgspec.json.decode(row[10]),
        decision=msgspec.json.decode(row[11]) if row[11] is not None else None,
        status_changed_at=row[12].replace(tzinfo=UTC),
        status_reason=row[13],
    )


class ModelVersionNotFoundError(NotFoundError):
    """No such model set or version in the registry (404)."""


class StatusMoveError(ConflictError):
    """The move is not allowed from the version's current status (409)."""


def checked_move(versions: list[ModelVersion], version: int, to: Status) -> ModelVersion:
    """The version of `versions` (one set's) that may move to `to`; ModelVersionNotFoundError
    or StatusMoveError saying why not."""
    model_set = versions[0].model_set
    current = next((v for v in versions if v.version == version), None)
    if current is None:
        raise ModelVersionNotFoundError(
            f"{model_set} has no version {version} in the registry; "
            "`ml-engine models list` shows the registered ones",
            field="version",
        )
    if to not in MOVES[current.status]:
        allowed = ", ".join(sorted(MOVES[current.status])) or "nothing"
        raise StatusMoveError(
            f"{model_set} v{version} is {current.status}: it can move to {allowed}, not to {to}"
        )
    return current


class RegistryMissingError(ServiceUnavailableError):
    """The registry's tables are not in the database yet (503; exit 3)."""


class ModelRegistry:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def check(self) -> None:
        """RegistryMissingError naming the fix when the migration has not run."""
        try:
            await self.db.fetchall("SELECT 1 FROM model_versions LIMIT 0", ())
        except MySQLError as exc:
            if exc.args and exc.args[0] == NO_SUCH_TABLE:
                raise RegistryMissingError(
                    f"the model registry is not in database {self.db.settings.database} yet: "
                    "run `make db` (python -m orchestrator db migrate)"
                ) from None
            raise

    async def register(self, new: NewVersion, actor: str, reason: str) -> ModelVersion:
        """Adds a version as a candidate; a version already registered is returned as it is."""

        async def insert(conn: Connection) -> ModelVersion | None:
            async with conn.cursor() as cur:
                # INSERT IGNORE: two replicas registering the same version at once both succeed,
                # and only the one that inserted it records the event.
                inserted = await cur.execute(
                    "INSERT IGNORE INTO model_versions (model_set, version, timeframe, symbols, "
                    "status, trained_through, data_from, data_to, feature_fingerprint, metrics, "
                    "status_reason) VALUES (%s, %s, %s, %s, 'candidate', %s, %s, %s, %s, %s, %s)",
                    (
                        new.model_set,
                        new.version,
                        new.timeframe,
                        msgspec.json.encode(new.symbols).decode(),
                        _naive(new.trained_through),
                        _naive(new.data_from),
                        _naive(new.data_to),
                        new.feature_fingerprint,
                        msgspec.json.encode(new.metrics).decode(),
                        reason,
                    ),
                )
                if inserted:
                    await self._event(
                        cur, new.model_set, new.version, None, "candidate", actor, reason
                    )
                return await self._select(cur, new.model_set, new.version, lock=False)

        created = await self.db.atomic(insert)
        assert created is not None
        return created

    async def move(
        self,
        model_set: str,
        version: int,
        to: Status,
        actor: str,
        reason: str,
        decision: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Moves one version to `to`. Becoming champion retires the current champion, becoming
        challenger rejects a challenger still waiting (one test at a time); both in the same
        transaction. StatusMoveError when `to` is not allowed from the version's status."""

        async def locked_move(conn: Connection) -> ModelVersion:
            async with conn.cursor() as cur:
                versions = await self._lock_set(cur, model_set)
                return await self._move(cur, versions, version, to, actor, reason, decision)

        return await self.db.atomic(locked_move)

    async def rollback(
        self, model_set: str, actor: str, reason: str, expected: int | None = None
    ) -> ModelVersion:
        """The champion before the current one serves again; the current one is retired.
        `expected`: the target the caller switched Triton to (StatusMoveError when another
        move changed it meanwhile)."""

        async def locked_rollback(conn: Connection) -> ModelVersion:
            async with conn.cursor() as cur:
                versions = await self._lock_set(cur, model_set)
                target = await self._previous_champion(cur, model_set)
                if expected is not None and target != expected:
                    raise StatusMoveError(
                        f"{model_set} changed meanwhile: the rollback target is now v{target}, "
                        f"not v{expected}; ask again"
                    )
                return await self._move(
                    cur, versions, target, "champion", actor, f"rollback: {reason}"
                )

        return await self.db.atomic(locked_rollback)

    async def versions_of(self, model_set: str) -> list[ModelVersion]:
        """One set's versions; ModelVersionNotFoundError naming the fix for an unknown set."""
        async with self.db.connection() as conn, conn.cursor() as cur:
            return await self._lock_set(cur, model_set, lock=False)

    async def rollback_target(self, model_set: str) -> int:
        """The version a rollback would serve (StatusMoveError when there is none)."""
        async with self.db.connection() as conn, conn.cursor() as cur:
            await self._lock_set(cur, model_set, lock=False)
            return await self._previous_champion(cur, model_set)

    async def record_decision(
        self, model_set: str, version: int, decision: dict[str, Any], reason: str
    ) -> bool:
        """Keeps the promotion test's latest numbers on a challenger still waiting (no move,
        no event); False when the version is no longer the challenger."""

        async def update(conn: Connection) -> int:
            async with conn.cursor() as cur:
                changed: int = await cur.execute(
                    "UPDATE model_versions SET decision = %s, status_reason = %s "
                    "WHERE model_set = %s AND version = %s AND status = 'challenger'",
                    (msgspec.json.encode(decision).decode(), reason[:2000], model_set, version),
                )
            return changed

        return bool(await self.db.atomic(update))

    async def versions(self, model_set: str | None = None) -> list[ModelVersion]:
        """Every registered version (of one set), newest first per set."""
        where, params = ("WHERE model_set = %s", (model_set,)) if model_set else ("", ())
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM model_versions {where} ORDER BY model_set, version DESC",
            params,
        )
        return [_version(r) for r in rows]

    async def events(self, model_set: str, limit: int = 20) -> list[StatusEvent]:
        rows = await self.db.fetchall(
            "SELECT model_set, version, from_status, to_status, at, actor, reason "
            "FROM model_version_events WHERE model_set = %s ORDER BY id DESC LIMIT %s",
            (model_set, limit),
        )
        return [
            StatusEvent(
                model_set=r[0],
                version=int(r[1]),
                from_status=r[2],
                to_status=r[3],
                at=r[4].replace(tzinfo=UTC),
                actor=r[5],
                reason=r[6],
            )
            for r in rows
        ]

    # --- inside a transaction -----------------------------------------------------------------
    @staticmethod
    async def _select(cur: Cursor, model_set: str, version: int, lock: bool) -> ModelVersion | None:
        suffix = " FOR UPDATE" if lock else ""
        await cur.execute(
            f"SELECT {_COLUMNS} FROM model_versions WHERE model_set = %s AND version = %s{suffix}",
            (model_set, version),
        )
        row = await cur.fetchone()
        return _version(row) if row is not None else None

    async def _move(
        self,
        cur: Cursor,
        versions: list[ModelVersion],
        version: int,
        to: Status,
        actor: str,
        reason: str,
        decision: dict[str, Any] | None = None,
    ) -> ModelVersion:
        current = checked_move(versions, version, to)
        displaced = _DISPLACED.get(to)
        for other in versions:
            if displaced is not None and other.status == to and other.version != version:
                await self._set_status(
                    cur, other, displaced, actor, f"replaced by v{version}: {reason}"
                )
        await self._set_status(cur, current, to, actor, reason, decision)
        moved = await self._select(cur, current.model_set, version, lock=False)
        assert moved is not None
        return moved

    @staticmethod
    async def _previous_champion(cur: Cursor, model_set: str) -> int:
        await cur.execute(
            "SELECT version FROM model_version_events WHERE model_set = %s AND "
            "from_status = 'champion' AND to_status = 'retired' ORDER BY id DESC LIMIT 1",
            (model_set,),
        )
        row = await cur.fetchone()
        if row is None:
            raise StatusMoveError(
                f"{model_set} has no earlier champion to go back to (none was retired yet)"
            )
        return int(row[0])

    @staticmethod
    async def _lock_set(cur: Cursor, model_set: str, lock: bool = True) -> list[ModelVersion]:
        suffix = " FOR UPDATE" if lock else ""
        await cur.execute(
            f"SELECT {_COLUMNS} FROM model_versions WHERE model_set = %s "
            f"ORDER BY version DESC{suffix}",
            (model_set,),
        )
        versions = [_version(r) for r in await cur.fetchall()]
        if not versions:
            raise ModelVersionNotFoundError(
                f"no model set {model_set!r} in the registry; `ml-engine models sync` registers "
                "the versions in the model repository",
                field="model_set",
            )
        return versions

    @staticmethod
    async def _set_status(
        cur: Cursor,
        version: ModelVersion,
        to: Status,
        actor: str,
        reason: str,
        decision: dict[str, Any] | None = None,
    ) -> None:
        await cur.execute(
            "UPDATE model_versions SET status = %s, status_reason = %s, "
            "status_changed_at = CURRENT_TIMESTAMP(6), decision = COALESCE(%s, decision) "
            "WHERE model_set = %s AND version = %s",
            (
                to,
                reason[:2000],
                None if decision is None else msgspec.json.encode(decision).decode(),
                version.model_set,
                version.version,
            ),
        )
        await ModelRegistry._event(
            cur, version.model_set, version.version, version.status, to, actor, reason
        )

    @staticmethod
    async def _event(
        cur: Cursor,
        model_set: str,
        version: int,
        from_status: Status | None,
        to: Status,
        actor: str,
        reason: str,
    ) -> None:
        await cur.execute(
            "INSERT INTO model_version_events (model_set, version, from_status, to_status, "
            "actor, reason) VALUES (%s, %s, %s, %s, %s, %s)",
            (model_set, version, from_status, to, actor[:128], reason[:2000]),
        )
