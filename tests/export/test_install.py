"""A retrained version's files: installed whole and numbered next, a cut-short install's leftovers
removed, old rejected and retired versions pruned while the versions that may serve stay."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from export.install import install, numbered, prune_versions, remove_leftovers, set_models
from orchestrator.inference.models import ENSEMBLE
from orchestrator.lifecycle.registry import ModelVersion, Status

NOW = datetime(2026, 12, 6, tzinfo=UTC)


def _repository(
    root: Path, versions: list[int], profiles: tuple[str, ...] = ("cpu", "gpu")
) -> Path:
    for profile in profiles:
        for name in set_models("5m"):
            for v in versions:
                (root / profile / name / str(v)).mkdir(parents=True)
                (root / profile / name / str(v) / "artifact").write_text(f"{name} v{v}")
            (root / profile / name / "config.pbtxt").write_text(
                f'name: "{name}"\nversion_policy {{ latest {{ num_versions: 1 }} }}\n'
            )
    return root / "cpu"


def _version(version: int, status: Status) -> ModelVersion:
    return ModelVersion(
        model_set=ENSEMBLE,
        version=version,
        timeframe="5m",
        symbols=["BTCUSD"],
        status=status,
        created_at=NOW,
        trained_through=NOW,
        data_from=NOW,
        data_to=NOW,
        feature_fingerprint="f",
        metrics={},
        decision=None,
        status_changed_at=NOW,
        status_reason="",
    )


def test_a_staged_version_is_installed_whole_as_the_next_number(tmp_path: Path) -> None:
    live = _repository(tmp_path / "live", [3, 4])
    staging = tmp_path / "live" / ".retrain-signal_ensemble-abc"
    _repository(staging, [1])
    assert install(staging, live, ENSEMBLE, champion=4) == 5
    for profile in ("cpu", "gpu"):
        for name in set_models("5m"):
            assert numbered(live.parent / profile / name) == [3, 4, 5]
            assert (live.parent / profile / name / "5" / "artifact").read_text() == f"{name} v1"
    # The champion was pinned before anything moved in: a restarted Triton serves it, not v5.
    config = (live / ENSEMBLE / "config.pbtxt").read_text()
    assert "version_policy { specific { versions: [ 4 ] } }" in config


def test_a_cut_short_install_and_its_staging_are_removed(tmp_path: Path) -> None:
    live = _repository(tmp_path / "live", [3, 4])
    staging = tmp_path / "live" / ".retrain-signal_ensemble-dead"
    _repository(staging, [1])
    other_set = tmp_path / "live" / ".retrain-signal_ensemble_1h-busy"
    other_set.mkdir()
    # v5 reached the gpu profile and one cpu model, never the cpu ensemble: not whole.
    for name in set_models("5m"):
        (live.parent / "gpu" / name / "5").mkdir()
    (live / "range_gru" / "5").mkdir()
    removed = remove_leftovers(live, ENSEMBLE, "5m")
    assert staging in removed
    assert other_set.is_dir()  # another set's retrain is not this one's leftover
    for profile in ("cpu", "gpu"):
        for name in set_models("5m"):
            assert numbered(live.parent / profile / name) == [3, 4]


def test_pruning_keeps_what_may_serve_and_the_newest_spares(tmp_path: Path) -> None:
    live = _repository(tmp_path / "live", list(range(1, 11)))
    statuses: dict[int, Status] = {
        1: "retired",
        2: "rejected",
        3: "retired",  # the rollback target
        4: "rejected",
        5: "rejected",
        6: "retired",
        7: "rejected",
        8: "champion",
        9: "rejected",
        10: "challenger",
    }
    versions = [_version(v, s) for v, s in statuses.items()]
    pruned = prune_versions(live, ENSEMBLE, "5m", versions, rollback_target=3, keep=2)
    # Spares newest first: 9, 7, 6, 5, 4, 2, 1 (3 is the rollback target): 9 and 7 stay.
    assert pruned == [1, 2, 4, 5, 6]
    for profile in ("cpu", "gpu"):
        for name in set_models("5m"):
            assert numbered(live.parent / profile / name) == [3, 7, 8, 9, 10]


def _gpu_ensemble(live: Path) -> list[str]:
    """The gpu profile's ensemble as the export writes it: no version policy, steps that run
    their models' latest version."""
    steps = [name for name in set_models("5m") if name != ENSEMBLE]
    scheduling = "\n".join(f'  {{ model_name: "{step}" model_version: -1 }}' for step in steps)
    (live.parent / "gpu" / ENSEMBLE / "config.pbtxt").write_text(
        f'name: "{ENSEMBLE}"\nplatform: "ensemble"\n'
        f"ensemble_scheduling {{\n step [\n{scheduling}\n ]\n}}\n"
    )
    return steps


def test_the_gpu_ensemble_and_its_step_models_are_pinned_to_the_champion(tmp_path: Path) -> None:
    live = _repository(tmp_path / "live", [3, 4])
    steps = _gpu_ensemble(live)
    staging = tmp_path / "live" / ".retrain-signal_ensemble-abc"
    _repository(staging, [1])
    assert install(staging, live, ENSEMBLE, champion=4) == 5
    # Left at `latest`, a restarted gpu Triton would run v5's networks under v4's ensemble.
    for name in (ENSEMBLE, *steps):
        config = (live.parent / "gpu" / name / "config.pbtxt").read_text()
        assert "version_policy { specific { versions: [ 4 ] } }" in config, name
        assert "latest" not in config, name
