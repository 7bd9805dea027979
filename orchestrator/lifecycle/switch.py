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

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from orchestrator.errors import ConflictError, ModelsUnavailableError
from orchestrator.fileio import atomic_file
from orchestrator.inference.models import FEATURE_SPEC_PARAMETER, config_parameter

LOAD_TIMEOUT_S = 120.0  # loading a version builds its sessions: seconds, not milliseconds
_VERSION_POLICY = re.compile(r"^version_policy \{.*\}$", re.MULTILINE)
_SPEC_PARAMETER = re.compile(
    rf'^parameters \{{ key: "{FEATURE_SPEC_PARAMETER}" value: .*$', re.MULTILINE
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


async def serve_version(
    triton: grpcclient.InferenceServerClient,
    model: str,
    version: int,
    timeout_s: float,
    feature_spec: str | None = None,
) -> None:
    """Makes `version` the only ready version of `model`, with `feature_spec` when given;
    VersionLoadError when Triton cannot load it (the previous version keeps serving)."""
    try:
        response: dict[str, Any] = await triton.get_model_config(
            model, as_json=True, client_timeout=timeout_s
        )
    except InferenceServerException as exc:
        raise ModelsUnavailableError(f"Triton did not answer {model}'s config: {exc}") from None
    config = response["config"]
    config["version_policy"] = {"specific": {"versions": [version]}}
    if feature_spec is not None:
        config.setdefault("parameters", {})[FEATURE_SPEC_PARAMETER] = {"string_value": feature_spec}
    try:
        await triton.load_model(
            model, config=json.dumps(config), client_timeout=max(timeout_s, LOAD_TIMEOUT_S)
        )
    except InferenceServerException as exc:
        raise VersionLoadError(
            f"Triton could not load {model} v{version} ({exc.message() or exc}); the version it "
            "served before still serves"
        ) from None
    if version not in await served_versions(triton, model, timeout_s):
        raise VersionLoadError(f"Triton reports {model} v{version} is not ready after its load")


def pin_in_repository(repository: Path, model: str, version: int) -> bool:
    """config.pbtxt of `model` serves `version` only, with that version's feature spec; False
    when the repository or the model is not on this machine (Triton reads it elsewhere)."""
    path = repository / model / "config.pbtxt"
    if not path.is_file():
        return False
    text = path.read_text()
    pinned = f"version_policy {{ specific {{ versions: [ {version} ] }} }}"
    updated, count = _VERSION_POLICY.subn(pinned, text)
    if not count:
        updated = f"{text.rstrip()}\n{pinned}\n"
    spec = version_spec(repository, model, version)
    if spec is not None:
        line = config_parameter(FEATURE_SPEC_PARAMETER, spec)
        updated = _SPEC_PARAMETER.sub(lambda _: line, updated)
    with atomic_file(path, text=True) as handle:
        handle.write(updated)
    return True
