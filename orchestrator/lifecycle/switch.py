"""Switching which version Triton serves: the model reloaded with `version_policy { specific }`.

Triton runs in explicit model-control mode. Loading a model again with a configuration that
names one version makes that version the only one ready; Triton keeps the old version serving
until the new one has loaded, and keeps it when the load fails, so a request never meets a
gap. The engine reads the served version from Triton (at most a second old) and every
prediction carries the version it was computed by: a request gets one version or the other,
never a mix.

The configuration given with the load is the model's own (as Triton reports it) with the
version policy changed, and the feature spec of the version asked for: the spec (normalisation
statistics and serving head) is a parameter of the model's configuration, which its versions
share, while each retrain fits its own, so a switch carries the version's
`feature_spec.json` along. Where the model repository is on this machine, config.pbtxt gets the
same policy and spec (written atomically), so a restarted Triton serves the same version; an
export writes `latest` again, so after a new export the newest version serves from the next
load.

An ensemble whose steps name their models' latest version (the gpu profile's
`signal_ensemble`) has one configuration for all its versions, so its versions cannot run
different networks side by side: it serves one version at a time, its step models pinned to the
same version (at once, without a bar boundary or a standby), and a challenger cannot be scored
beside it in shadow: loading one is refused, so a retrain's challenger is rejected there with
that reason while the champion serves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from orchestrator.errors import ConflictError, ModelsUnavailableError
from orchestrator.fileio import atomic_file
from orchestrator.inference.models import (
    CHALLENGER_VERSION_PARAMETER,
    FEATURE_SPEC_PARAMETER,
    PREVIOUS_VERSION_PARAMETER,
    SERVING_FROM_PARAMETER,
    SERVING_VERSION_PARAMETER,
    config_parameter,
)

LOAD_TIMEOUT_S = 120.0  # loading a version builds its sessions: seconds, not milliseconds
_VERSION_POLICY = re.compile(r"^version_policy \{.*\}$", re.MULTILINE)
_SPEC_PARAMETER = re.compile(
    rf'^parameters \{{ key: "{FEATURE_SPEC_PARAMETER}" value: .*$', re.MULTILINE
)
# The parameters that exist only while a set holds more than one version.
_PER_VERSION_KEYS = (
    rf"{FEATURE_SPEC_PARAMETER}_\d+|{SERVING_VERSION_PARAMETER}|{CHALLENGER_VERSION_PARAMETER}"
    rf"|{PREVIOUS_VERSION_PARAMETER}|{SERVING_FROM_PARAMETER}"
)
_PER_VERSION = re.compile(rf"^(?:{_PER_VERSION_KEYS})$")
_ENSEMBLE_PLATFORM = re.compile(r'^platform: "ensemble"', re.MULTILINE)
_REPOSITORY_STEP = re.compile(r'model_name: "([^"]+)"')
_PER_VERSION_LINE = re.compile(
    rf'^parameters \{{ key: "(?:{_PER_VERSION_KEYS})" value: .*\n?', re.MULTILINE
)


class VersionLoadError(ConflictError):
    """Triton could not load the asked version (gone from the repository, broken): the version
    it served before still serves (409)."""


async def served_versions(
    triton: grpcclient.InferenceServerClient, model: str, timeout_s: float
) -> list[int]:
    """The versions of `model` Triton has ready."""
    return (await _ready_versions(triton, timeout_s)).get(model, [])


async def _ready_versions(
    triton: grpcclient.InferenceServerClient, timeout_s: float
) -> dict[str, list[int]]:
    """Every model's ready versions, from one read of Triton's model index."""
    try:
        index = await triton.get_model_repository_index(as_json=True, client_timeout=timeout_s)
    except InferenceServerException as exc:
        raise ModelsUnavailableError(f"Triton did not answer its model index: {exc}") from None
    ready: dict[str, list[int]] = {}
    for entry in index.get("models", []):
        if entry.get("state") == "READY" and "version" in entry:
            ready.setdefault(entry["name"], []).append(int(entry["version"]))
    return {name: sorted(versions) for name, versions in ready.items()}


async def named_bar(
    triton: grpcclient.InferenceServerClient, model: str, timeout_s: float
) -> tuple[int, str] | None:
    """The promotion boundary `model`'s config names (the replaced version, the first bar of
    the promoted one), or None."""
    try:
        response = await triton.get_model_config(model, client_timeout=timeout_s)
    except InferenceServerException as exc:
        raise ModelsUnavailableError(f"Triton did not answer {model}'s config: {exc}") from None
    parameters = response.config.parameters
    if PREVIOUS_VERSION_PARAMETER not in parameters or SERVING_FROM_PARAMETER not in parameters:
        return None
    previous = parameters[PREVIOUS_VERSION_PARAMETER].string_value
    return int(previous), parameters[SERVING_FROM_PARAMETER].string_value


def version_spec(repository: Path, model: str, version: int) -> str | None:
    """The version's feature spec as the config parameter holds it (compact JSON); None when
    the repository is not on this machine."""
    path = repository / model / str(version) / "feature_spec.json"
    if not path.is_file():
        return None
    return msgspec.json.encode(msgspec.json.decode(path.read_bytes())).decode()


class Loaded(NamedTuple):
    """What Triton holds of a set: the version served, the challenger scored beside it in
    shadow, and the previous champion on standby (a rollback to it drops the served version
    from the version policy and nothing else: Triton loads nothing, in milliseconds)."""

    serving: int
    challenger: int | None = None
    standby: tuple[int, ...] = ()
    # A promotion's bar boundary: bars opening before `first_bar` (RFC 3339) are answered by
    # `previous` (on standby), so every replica answers each bar with one version.
    previous: int | None = None
    first_bar: str | None = None

    @property
    def versions(self) -> list[int]:
        extra = () if self.challenger is None else (self.challenger,)
        return sorted({self.serving, *extra, *self.standby})


def _specs(repository: Path, model: str, loaded: Loaded) -> dict[int, str]:
    found = {v: version_spec(repository, model, v) for v in loaded.versions}
    return {v: spec for v, spec in found.items() if spec is not None}


async def serve_version(
    triton: grpcclient.InferenceServerClient,
    model: str,
    loaded: Loaded,
    timeout_s: float,
    repository: Path,
) -> None:
    """Makes `loaded.versions` the ready versions of `model`, `loaded.serving` the one served,
    each with its feature spec where the repository is local; VersionLoadError when Triton
    cannot load them (what it served before keeps serving)."""
    try:
        response: dict[str, Any] = await triton.get_model_config(
            model, as_json=True, client_timeout=timeout_s
        )
    except InferenceServerException as exc:
        raise ModelsUnavailableError(f"Triton did not answer {model}'s config: {exc}") from None
    config = response["config"]
    steps = ensemble_steps(config)
    if steps:
        if loaded.challenger is not None:
            raise VersionLoadError(
                f"{model} is an ensemble whose steps run their models' latest version (the gpu "
                f"profile): it serves one version at a time, so v{loaded.challenger} cannot be "
                f"scored beside v{loaded.serving} in shadow; a Triton on the cpu profile "
                f"(model_repository/cpu, the same versions) serves them side by side"
            )
        loaded = Loaded(loaded.serving)
    config["version_policy"] = {"specific": {"versions": loaded.versions}}
    parameters = {
        key: value
        for key, value in config.get("parameters", {}).items()
        if not _PER_VERSION.match(key)
    }
    specs = await asyncio.to_thread(_specs, repository, model, loaded)
    for key, value in _parameters(loaded, specs).items():
        parameters[key] = {"string_value": value}
    config["parameters"] = parameters
    if steps:
        await _load_ensemble(triton, model, config, steps, loaded.serving, timeout_s, repository)
    else:
        await _load(triton, model, config, loaded.versions, timeout_s)


async def _load_ensemble(
    triton: grpcclient.InferenceServerClient,
    model: str,
    config: dict[str, Any],
    steps: list[str],
    version: int,
    timeout_s: float,
    repository: Path,
) -> None:
    """`version` of the ensemble and of every step model, or what served before (and
    VersionLoadError). Triton reloads an ensemble's step models from their repository configs
    when it loads the ensemble, so those are pinned first where the repository is on this
    machine, and the step models are pinned again after the load where it is not."""
    folder = await asyncio.to_thread(_ensemble_folder, repository, model)
    saved = {} if folder is None else await asyncio.to_thread(_pin_files, folder, steps, version)
    switched: dict[str, list[int]] = {}  # step model -> the versions it had ready
    try:
        before = await _ready_versions(triton, timeout_s)
        for step in steps:
            await _load_versions(triton, step, [version], timeout_s)
            switched[step] = before.get(step, [])
        await _load(triton, model, config, [version], timeout_s)
        after = await _ready_versions(triton, timeout_s)
        for step in steps:
            if after.get(step) != [version]:
                await _load_versions(triton, step, [version], timeout_s)
    except BaseException:
        await _restore_steps(triton, switched, timeout_s)
        await asyncio.to_thread(_restore_files, saved)
        raise


def profile_folders(repository: Path) -> list[Path]:
    """The repository, and its `gpu` sibling when it is a `cpu` profile beside one (the layout
    of model_repository/, where the engine is configured with the cpu folder)."""
    sibling = repository.parent / "gpu"
    return [repository, sibling] if repository.name == "cpu" and sibling.is_dir() else [repository]


def _ensemble_folder(repository: Path, model: str) -> Path | None:
    """The profile on this machine where `model` is an ensemble."""
    for folder in profile_folders(repository):
        path = folder / model / "config.pbtxt"
        if path.is_file() and _ENSEMBLE_PLATFORM.search(path.read_text()):
            return folder
    return None


def _pin_files(folder: Path, steps: list[str], version: int) -> dict[Path, str]:
    """Each step model's config.pbtxt pinned to `version`; returns what they held before."""
    saved = {}
    for step in steps:
        path = folder / step / "config.pbtxt"
        if path.is_file():
            saved[path] = path.read_text()
            pin_in_repository(folder, step, Loaded(version))
    return saved


def _restore_files(saved: dict[Path, str]) -> None:
    for path, text in saved.items():
        with atomic_file(path, text=True) as handle:
            handle.write(text)


def ensemble_steps(config: dict[str, Any]) -> list[str]:
    """The models an ensemble's steps run, from its configuration as Triton reports it in JSON
    (none for any other model)."""
    steps = config.get("ensemble_scheduling", {}).get("step", [])
    return sorted({str(step["model_name"]) for step in steps})


async def _restore_steps(
    triton: grpcclient.InferenceServerClient, switched: dict[str, list[int]], timeout_s: float
) -> None:
    """Best effort: each step model back to the versions it had ready (the error that made
    this necessary is the one to report)."""
    for step, before in switched.items():
        if before:
            with contextlib.suppress(Exception):
                await _load_versions(triton, step, before, timeout_s)


async def _load_versions(
    triton: grpcclient.InferenceServerClient, model: str, versions: list[int], timeout_s: float
) -> None:
    """`versions` become the ready versions of `model`, nothing else in its config changed."""
    try:
        response: dict[str, Any] = await triton.get_model_config(
            model, as_json=True, client_timeout=timeout_s
        )
    except InferenceServerException as exc:
        raise ModelsUnavailableError(f"Triton did not answer {model}'s config: {exc}") from None
    config = response["config"]
    config["version_policy"] = {"specific": {"versions": sorted(versions)}}
    await _load(triton, model, config, sorted(versions), timeout_s)


async def narrow_to(
    triton: grpcclient.InferenceServerClient, model: str, keep: list[int], timeout_s: float
) -> None:
    """Drops every ready version of `model` but `keep` (already loaded), changing nothing but
    the version policy: Triton unloads and loads nothing else (milliseconds), and the engine,
    finding the served version gone, serves the newest kept version that is not the challenger
    (orchestrator/inference/client.py)."""
    await _load_versions(triton, model, keep, timeout_s)


async def _load(
    triton: grpcclient.InferenceServerClient,
    model: str,
    config: dict[str, Any],
    versions: list[int],
    timeout_s: float,
) -> None:
    names = ", ".join(f"v{v}" for v in versions)
    try:
        await triton.load_model(
            model, config=json.dumps(config), client_timeout=max(timeout_s, LOAD_TIMEOUT_S)
        )
    except InferenceServerException as exc:
        raise VersionLoadError(
            f"Triton could not load {model} {names} ({exc.message() or exc}); what it served "
            "before still serves"
        ) from None
    ready = await served_versions(triton, model, timeout_s)
    if not set(versions) <= set(ready):
        raise VersionLoadError(f"Triton reports {model} {names} not all ready after the load")


def _parameters(loaded: Loaded, specs: dict[int, str]) -> dict[str, str]:
    """The config parameters that say which version serves and each version's spec."""
    parameters = {}
    if loaded.serving in specs:
        parameters[FEATURE_SPEC_PARAMETER] = specs[loaded.serving]
    if len(loaded.versions) > 1:
        parameters[SERVING_VERSION_PARAMETER] = str(loaded.serving)
        if loaded.challenger is not None:
            parameters[CHALLENGER_VERSION_PARAMETER] = str(loaded.challenger)
        if loaded.previous in loaded.versions and loaded.first_bar is not None:
            parameters[PREVIOUS_VERSION_PARAMETER] = str(loaded.previous)
            parameters[SERVING_FROM_PARAMETER] = loaded.first_bar
        for version, spec in specs.items():
            parameters[f"{FEATURE_SPEC_PARAMETER}_{version}"] = spec
    return parameters


def pin_in_repository(repository: Path, model: str, loaded: Loaded) -> bool:
    """config.pbtxt of `model` holds what serve_version loaded (policy, served version, specs);
    an ensemble's step models are pinned to its one version too. False when the repository or
    the model is not on this machine (Triton reads it elsewhere)."""
    path = repository / model / "config.pbtxt"
    if not path.is_file():
        return False
    text = path.read_text()
    steps = _REPOSITORY_STEP.findall(text) if _ENSEMBLE_PLATFORM.search(text) else []
    if steps:
        loaded = Loaded(loaded.serving)
    versions = ", ".join(str(v) for v in loaded.versions)
    pinned = f"version_policy {{ specific {{ versions: [ {versions} ] }} }}"
    updated, count = _VERSION_POLICY.subn(pinned, text)
    if not count:
        updated = f"{updated.rstrip()}\n{pinned}\n"
    updated = _PER_VERSION_LINE.sub("", updated)
    parameters = _parameters(loaded, _specs(repository, model, loaded))
    spec = parameters.pop(FEATURE_SPEC_PARAMETER, None)
    if spec is not None:
        line = config_parameter(FEATURE_SPEC_PARAMETER, spec)
        updated = _SPEC_PARAMETER.sub(lambda _: line, updated)
    if parameters:
        extra = [config_parameter(key, value) for key, value in parameters.items()]
        updated = updated.rstrip() + "\n" + "\n".join(extra) + "\n"
    for step in sorted(set(steps)):
        pin_in_repository(repository, step, loaded)
    with atomic_file(path, text=True) as handle:
        handle.write(updated)
    return True


def pin_profiles(repository: Path, model: str, loaded: Loaded) -> None:
    """pin_in_repository for every profile folder (profile_folders): a Triton restarted on
    either profile serves what the registry says."""
    for folder in profile_folders(repository):
        pin_in_repository(folder, model, loaded)
