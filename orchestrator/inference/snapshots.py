"""Feature-state snapshots: a restarted engine resumes its states instead of recomputing them.

Seeding one 5m state reads a week of bars and replays 664 of them through every indicator
(about 10 ms); 10,000 symbols x 3 timeframes took minutes after a restart (bench-scale). A
snapshot holds each state with what it was computed from: the serving spec's digest (features,
normalisation, window: a new model version re-seeds) and the stored series' revision (a
corrected or backfilled bar re-seeds). A state adopted from it is then stepped over the bars
that arrived since, through the same check as every sweep (the store must still hold the
state's last bar unchanged), so a snapshot can be old but never wrong.

The file is written to a temporary name and renamed into place (a killed writer leaves the
previous snapshot). One file per replica (its host name and API port name it: pods share a
port), written by that replica only. Replicas that share the folder (one machine, or a volume
the pods share) read each other's: a replica that starts without a state of its own for a key
resumes it from a peer's file, so a new replica, or one whose peers computed most keys, does
not seed them again. Every state is checked as above whichever file it came from (the series
revision lives in the shared database); a peer's file not written for PEER_MAX_AGE_S is passed
over (its replica is gone, and stepping a day of bars costs about what seeding does). The files
are pickles of our own objects: keep the folder private to the engine's replicas.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.features.incremental import IncrementalFeatures
from orchestrator.features.spec import FeatureSpec
from orchestrator.inference.prediction import FeatureKey
from orchestrator.marketdata.sessions import TradingWeek

log = logging.getLogger("orchestrator.barclose")

SNAPSHOT_FORMAT = 1  # bump when a state's layout changes: older files are then ignored
PEER_PATTERN = "states-*.pickle"
PEER_MAX_AGE_S = 86400.0


def snapshot_file(folder: Path, port: int) -> Path:
    """This replica's snapshot in `folder`: named by host and port, so that replicas sharing
    the folder (processes on one machine, pods on one volume) never write the same file."""
    return folder / f"states-{socket.gethostname()}-{port}.pickle"


def spec_digest(spec: FeatureSpec) -> str:
    """Identifies everything a state's numbers depend on (the whole serving spec)."""
    return hashlib.sha256(spec.dumps()).hexdigest()


@dataclass(frozen=True)
class SavedState:
    digest: str  # spec_digest of the spec it was computed with
    revision: int  # of the stored series it was read from
    features: IncrementalFeatures
    week: TradingWeek | None


def save(path: Path, states: dict[FeatureKey, SavedState]) -> float:
    """Writes `states` atomically; returns the seconds it took."""
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as out:
            pickle.dump((SNAPSHOT_FORMAT, states), out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return time.perf_counter() - started


def load(path: Path) -> dict[FeatureKey, SavedState]:
    """The states of the last snapshot; none when there is no file, or it is unreadable or of
    another format (the states are then seeded from the store, as without snapshots)."""
    try:
        with path.open("rb") as source:
            saved_format, states = pickle.load(source)  # our own file (see the docstring)
    except FileNotFoundError:
        return {}
    except Exception as exc:
        log.warning("feature-state snapshot %s ignored (unreadable: %s)", path, exc)
        return {}
    if saved_format != SNAPSHOT_FORMAT or not isinstance(states, dict):
        log.warning("feature-state snapshot %s ignored (format %s)", path, saved_format)
        return {}
    return states


def load_shared(path: Path) -> tuple[dict[FeatureKey, SavedState], set[FeatureKey]]:
    """This replica's states (`path`), then, for the keys it has none of, those of the other
    replicas' snapshots in the same folder written within PEER_MAX_AGE_S, the most recent file
    first. Returns the states and the keys that came from the other files."""
    states = load(path)
    from_peers: set[FeatureKey] = set()
    oldest = time.time() - PEER_MAX_AGE_S
    written = {p: _written_at(p) for p in path.parent.glob(PEER_PATTERN) if p != path}
    recent = [p for p, at in written.items() if at >= oldest]
    for peer in sorted(recent, key=written.__getitem__, reverse=True):
        for key, saved in load(peer).items():
            if key not in states:
                states[key] = saved
                from_peers.add(key)
    return states, from_peers


def _written_at(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # removed since the listing
        return 0.0
