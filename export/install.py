"""A retrained version's files: installed into the live repository whole, a dead attempt's
leftovers removed, old versions pruned.

The live repository is the one Triton reads (`MODEL_REPOSITORY`, the cpu profile, with its `gpu`
sibling). A version is renamed in model by model, the cpu ensemble last: that directory holds
every artifact the cpu profile serves, so a version exists for the registry and for Triton only
once it is whole, and anything numbered above the newest whole version is a cut-short install.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from export.catalog import model_defs
from orchestrator.lifecycle.registry import ModelVersion
from orchestrator.lifecycle.switch import Loaded, pin_in_repository, profile_folders

STAGING_PREFIX = ".retrain-"


def numbered(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _profiles(staging: Path, repository: Path) -> list[tuple[Path, Path]]:
    """(staged profile, live profile) pairs: the configured repository, and its gpu sibling
    when the configured one is a `cpu` directory beside one."""
    pairs = [(staging / "cpu", repository)]
    if (staging / "gpu").is_dir():
        pairs += [(staging / "gpu", sibling) for sibling in profile_folders(repository)[1:]]
    return pairs


def set_models(timeframe: str) -> list[str]:
    """The names of every model of one timeframe's set (the shapes do not matter here)."""
    return [model.name for model in model_defs(1, 1, 1, 1, timeframe)]


def remove_leftovers(repository: Path, model_set: str, timeframe: str) -> list[Path]:
    """Staging repositories of dead attempts, and version directories above the set's newest
    whole version (no cpu ensemble: an install was cut short)."""
    staged = repository.parent.glob(f"{STAGING_PREFIX}{model_set}-*")
    removed = [p for p in staged if p.is_dir()]
    whole = max(numbered(repository / model_set), default=0)
    for live in profile_folders(repository):
        for name in set_models(timeframe):
            removed += [live / name / str(v) for v in numbered(live / name) if v > whole]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def install(staging: Path, repository: Path, model_set: str, champion: int) -> int:
    """Renames the staged version into the live repository as its next version; returns it."""
    pairs = _profiles(staging, repository)
    for _, live in pairs:
        config = live / model_set / "config.pbtxt"
        # A config an export wrote serves the newest version (the gpu ensemble says nothing,
        # which means the same): pin the champion first, with an ensemble's step models (a
        # config a switch wrote names its versions already, and stays).
        if config.is_file() and "version_policy { specific" not in config.read_text():
            pin_in_repository(live, model_set, Loaded(champion))
    staged = {
        src: [d for d in sorted(src.iterdir()) if d.is_dir() and numbered(d)] for src, _ in pairs
    }
    version = 1 + max(
        (max(numbered(live / d.name), default=0) for src, live in pairs for d in staged[src]),
        default=0,
    )
    moves: list[tuple[Path, Path]] = []
    for src, live in reversed(pairs):  # gpu first, the cpu ensemble last
        models = sorted(staged[src], key=lambda d: src.name == "cpu" and d.name == model_set)
        for model_dir in models:
            target_dir = live / model_dir.name
            if not target_dir.is_dir():
                target_dir.mkdir(parents=True)
                shutil.copy2(model_dir / "config.pbtxt", target_dir / "config.pbtxt")
            moves.append((model_dir / str(numbered(model_dir)[-1]), target_dir / str(version)))
    for source, target in moves:
        os.rename(source, target)
    return version


def prune_versions(
    repository: Path,
    model_set: str,
    timeframe: str,
    versions: list[ModelVersion],
    rollback_target: int | None,
    keep: int,
) -> list[int]:
    """Removes the files of rejected and retired versions beyond the newest `keep` of them
    (RETRAIN_KEEP_VERSIONS: kept for a person to study or promote by hand); the
    champion, the challenger, the rollback target and candidates are never touched. Their
    registry rows stay (the history); promoting one whose files are gone answers 409."""
    protected = {v.version for v in versions if v.status in ("champion", "challenger", "candidate")}
    if rollback_target is not None:
        protected.add(rollback_target)
    spare = sorted(
        (v.version for v in versions if v.status in ("rejected", "retired")),
        reverse=True,
    )
    doomed = [v for v in spare if v not in protected][keep:]
    for version in doomed:
        for live in profile_folders(repository):
            for name in set_models(timeframe):
                shutil.rmtree(live / name / str(version), ignore_errors=True)
    return sorted(doomed)
