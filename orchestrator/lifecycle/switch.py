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
"""

from __future__ import annotations

import asyncio
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
    FEATURE_SPEC_PARAMETER,
    SERVING_VERSION_PARAMETER,
    config_parameter,
)

LOAD_TIMEOUT_S = 120.0  # loading a version builds its sessions: seconds, not milliseconds
_VERSION_POLICY = re.compile(r"^version_policy \{.*\}$", re.MULTILINE)
_SPEC_PARAMETER = re.compile(
    rf'^parameters \{{ key: "{FEATURE_SPEC_PARAMETER}" value: .*$', re.MULTILINE
)
# The parameters that exist only while a set holds more than one version.
_PER_VERSION = re.compile(rf"^(?:{FEATURE_SPEC_PARAMETER}_\d+|{SERVING_VERSION_PARAMETER})$")
_PER_VERSION_LINE = re.compile(
    rf'^parameters \{{ key: "(?:{FEATURE_SPEC_PARAMETER}_\d+|{SERVING_VERSION_PARAMETER})" '
    r"value: .*\n?",
    re.MULTILINE,
)


class VersionLoadError(ConflictError):
    """Triton could not load the asked version (gone from the repository, broken): the version
    it served before still serves (409)."""


async def served_versions(
    triton: grpcclient.InferenceServerClient, model: str, timeout_s: float
) -> list[int]:
    """The versions of `model` Triton has ready."""
    try:
        index = await triton.get_model_repository_index(as_json=True, client_timeout=timeout_s)
    except InferenceServerException as exc:
        raise ModelsUnavailableError(f"Triton did not answer its model index: {exc}") from None
    return sorted(
        int(entry["version"])
        for entry in index.get("models", [])
        if entry.get("name") == model and entry.get("state") == "READY" and "version" in entry
    )


def version_spec(repository: Path, model: str, version: int) -> str | None:
    """The version's feature spec as the config parameter holds it (compact JSON); None when
    the repository is not on this machine."""
    path = repository / model / str(version) / "feature_spec.json"
    if not path.is_file():
        return None
    return msgspec.json.encode(msgspec.json.decode(path.read_bytes())).decode()


class Loaded(NamedTuple):
    """What Triton holds of a set: the version served, and those scored beside it in shadow."""

    serving: int
    shadow: tuple[int, ...] = ()

    @property
    def versions(self) -> list[int]:
        return sorted({self.serving, *self.shadow})


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
    config["version_policy"] = {"specific": {"versions": loaded.versions}}
    parameters = {
        key: value
        for key, value in config.get("parameters", {}).items()
        if not _PER_VERSION.match(key)
    }
    specs = await asyncio.to_thread(_specs, repository, model, loaded)
    if loaded.serving in specs:
        parameters[FEATURE_SPEC_PARAMETER] = {"string_value": specs[loaded.serving]}
    if loaded.shadow:
        parameters[SERVING_VERSION_PARAMETER] = {"string_value": str(loaded.serving)}
        for version, spec in specs.items():
            parameters[f"{FEATURE_SPEC_PARAMETER}_{version}"] = {"string_value": spec}
    config["parameters"] = parameters
    names = ", ".join(f"v{v}" for v in loaded.versions)
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
    if not set(loaded.versions) <= set(ready):
        raise VersionLoadError(f"Triton reports {model} {names} not all ready after the load")


def pin_in_repository(repository: Path, model: str, loaded: Loaded) -> bool:
    """config.pbtxt of `model` holds what serve_version loaded (policy, served version, specs);
    False when the repository or the model is not on this machine (Triton reads it elsewhere)."""
    path = repository / model / "config.pbtxt"
    if not path.is_file():
        return False
    text = path.read_text()
    versions = ", ".join(str(v) for v in loaded.versions)
    pinned = f"version_policy {{ specific {{ versions: [ {versions} ] }} }}"
    updated, count = _VERSION_POLICY.subn(pinned, text)
    if not count:
        updated = f"{updated.rstrip()}\n{pinned}\n"
    updated = _PER_VERSION_LINE.sub("", updated)
    specs = _specs(repository, model, loaded)
    if loaded.serving in specs:
        line = config_parameter(FEATURE_SPEC_PARAMETER, specs[loaded.serving])
        updated = _SPEC_PARAMETER.sub(lambda _: line, updated)
    if loaded.shadow:
        extra = [config_parameter(SERVING_VERSION_PARAMETER, str(loaded.serving))]
        extra += [
            config_parameter(f"{FEATURE_SPEC_PARAMETER}_{v}", spec) for v, spec in specs.items()
        ]
        updated = updated.rstrip() + "\n" + "\n".join(extra) + "\n"
    with atomic_file(path, text=True) as handle:
        handle.write(updated)
    return True
