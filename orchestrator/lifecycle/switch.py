"""Switching which version Triton serves: the model reloaded with `version_policy { specific }`.

Triton runs in explicit model-control mode. Loading a model again with a configuration that
names one version makes that version the only one ready; Triton keeps the old version serving
until the new one has loaded, and keeps it when the load fails, so a request never meets a
gap. The engine reads the served version from Triton (at most a second old) and every
prediction carries the version it was computed by: a request gets one version or the other,
never a mix.

The configuration given with the load is the model's own (as Triton reports it) with only the
version policy changed. Where the model repository is on this machine, config.pbtxt gets the
same policy (written atomically), so a restarted Triton serves the same version; an export
writes `latest` again, so after a new export the newest version serves from the next load.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from orchestrator.errors import ConflictError, ModelsUnavailableError
from orchestrator.fileio import atomic_file

LOAD_TIMEOUT_S = 120.0  # loading a version builds its sessions: seconds, not milliseconds
_VERSION_POLICY = re.compile(r"^version_policy \{.*\}$", re.MULTILINE)


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


async def serve_version(
    triton: grpcclient.InferenceServerClient, model: str, version: int, timeout_s: float
) -> None:
    """Makes `version` the only ready version of `model`; VersionLoadError when Triton cannot
    load it (the previous version keeps serving)."""
    try:
        response: dict[str, Any] = await triton.get_model_config(
            model, as_json=True, client_timeout=timeout_s
        )
    except InferenceServerException as exc:
        raise ModelsUnavailableError(f"Triton did not answer {model}'s config: {exc}") from None
    config = response["config"]
    config["version_policy"] = {"specific": {"versions": [version]}}
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
    """config.pbtxt of `model` serves `version` only; False when the repository or the model
    is not on this machine (Triton reads it elsewhere)."""
    path = repository / model / "config.pbtxt"
    if not path.is_file():
        return False
    text = path.read_text()
    pinned = f"version_policy {{ specific {{ versions: [ {version} ] }} }}"
    updated, count = _VERSION_POLICY.subn(pinned, text)
    with atomic_file(path, text=True) as handle:
        handle.write(updated if count else f"{text.rstrip()}\n{pinned}\n")
    return True
