"""What the model repository holds, as registry entries: one per version of each ensemble.

Each version directory of a `signal_ensemble*` model carries the export's `model_card.json` and
`feature_spec.json`; the registry keeps the card's headline numbers (served skill per horizon,
interval coverage, probability calibration) so `GET /api/models` can set them beside the live
ones without reading files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from orchestrator.inference.models import ENSEMBLE
from orchestrator.lifecycle.registry import (
    ModelRegistry,
    ModelVersion,
    NewVersion,
    StatusMoveError,
)


def card_metrics(card: dict[str, Any]) -> dict[str, Any]:
    """The card's numbers a promotion or a person compares versions by."""
    ranges = card.get("ranges", {})
    probabilities = card.get("probabilities", {})
    return {
        "served_skill": {h: r.get("served_skill", {}).get("mean") for h, r in ranges.items()},
        "best_baseline": {h: r.get("best_baseline") for h, r in ranges.items()},
        "coverage": card.get("coverage", {}).get("overall"),
        "coverage_level": card.get("coverage", {}).get("level"),
        "ece": {side: probabilities.get(side, {}).get("ece") for side in ("long", "short")},
        "samples": card.get("samples"),
    }


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def exported_version(model_set: str, version_dir: Path) -> NewVersion | None:
    """The registry entry of one ensemble version directory (None without a card and a spec:
    not an export's, or not complete)."""
    card_path, spec_path = version_dir / "model_card.json", version_dir / "feature_spec.json"
    if not (card_path.is_file() and spec_path.is_file()):
        return None
    # The card is Python's JSON (NaN where a score is undefined); msgspec refuses NaN.
    card = json.loads(card_path.read_text())
    spec = msgspec.json.decode(spec_path.read_bytes())
    return NewVersion(
        model_set=model_set,
        version=int(version_dir.name),
        timeframe=card["timeframe"],
        symbols=list(card.get("symbols", [])),
        feature_fingerprint=spec["fingerprint"],
        trained_through=_moment(card.get("data_to")),
        data_from=_moment(card.get("data_from")),
        data_to=_moment(card.get("data_to")),
        metrics=card_metrics(card),
    )


def exported_versions(repository: Path) -> list[NewVersion]:
    """Every version with a card and a spec, per ensemble, oldest first (none when the
    repository is not a local directory)."""
    found: list[NewVersion] = []
    if not repository.is_dir():
        return found
    for model_dir in sorted(repository.glob(f"{ENSEMBLE}*")):
        numbered = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
        for version_dir in sorted(numbered, key=lambda p: int(p.name)):
            entry = exported_version(model_dir.name, version_dir)
            if entry is not None:
                found.append(entry)
    return found


async def sync_registry(
    registry: ModelRegistry, repository: Path, actor: str
) -> list[ModelVersion]:
    """Registers the versions the repository holds that the registry lacks. A set without a
    champion gets its newest version as champion: the one Triton serves under the repository's
    latest-version policy."""
    await registry.check()
    exported = await asyncio.to_thread(exported_versions, repository)
    for new in exported:
        await registry.register(new, actor, f"found in {repository.name}/{new.model_set}")
    by_set: dict[str, list[ModelVersion]] = {}
    for version in await registry.versions():
        by_set.setdefault(version.model_set, []).append(version)
    for model_set, versions in by_set.items():
        if any(v.status == "champion" for v in versions):
            continue
        newest = max(
            (v for v in versions if v.status == "candidate"),
            key=lambda v: v.version,
            default=None,
        )
        if newest is not None:
            # Another replica syncing at the same moment may have chosen it first.
            with contextlib.suppress(StatusMoveError):
                await registry.move(
                    model_set,
                    newest.version,
                    "champion",
                    actor,
                    "the set had no champion: its newest version is the one Triton serves",
                )
    return await registry.versions()
