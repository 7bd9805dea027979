"""Readers for the deployment files: settings names, compose files, kustomize overlays rendered
without kustomize (base resources + strategic-merge patches), Triton's text-protobuf configs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
K8S = DOCKER / "k8s"
OVERLAYS = ("gpu", "cpu")
COMPOSE_FILES = (DOCKER / "compose.yaml", DOCKER / "compose.cpu.yaml")

_ENV_READ = re.compile(
    r"\b(?:env_text|env_int|env_float|env_list|env_choice|_cron)\(\s*\"([A-Z][A-Z0-9_]*)\""
)
_SETTINGS_SOURCES = (
    "orchestrator/settings.py",
    "orchestrator/jobs/settings.py",
    "orchestrator/lifecycle/retraining.py",
)


def code_settings() -> set[str]:
    """Every variable the settings modules read from the environment."""
    names: set[str] = set()
    for rel in _SETTINGS_SOURCES:
        names |= set(_ENV_READ.findall((ROOT / rel).read_text()))
    return names


def readme_settings() -> set[str]:
    """Every backticked name in the first column of README's "Settings (environment)" table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Settings (environment)", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            first = line.split("|")[1]
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", first))
    return names


def readme_defaults() -> dict[str, str]:
    """Single-name rows and `A` / `B` rows of the settings table mapped to their defaults."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Settings (environment)", 1)[1].split("\n## ", 1)[0]
    out: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0])
        defaults = re.findall(r"`([^`]*)`", cells[1])
        if len(names) == len(defaults):
            out.update(zip(names, defaults, strict=True))
    return out


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def load_compose(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


# --- kustomize, the subset used here ---------------------------------------------------------


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge for the shapes used here: maps merge, lists of named maps merge by name,
    other lists and scalars are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base[key], value) if key in base else value
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in base + patch)
    ):
        merged = {item["name"]: item for item in base}
        for item in patch:
            merged[item["name"]] = _merge(merged.get(item["name"], {}), item)
        return list(merged.values())
    return patch


def _key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def render(directory: Path) -> list[dict[str, Any]]:
    """`kustomize build` for resources, patches (strategic merge by kind and name) and labels."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    allowed = {"apiVersion", "kind", "resources", "patches", "labels"}
    unknown = set(kust) - allowed
    if unknown:
        raise ValueError(f"{directory}: kustomization fields this renderer ignores: {unknown}")
    docs: list[dict[str, Any]] = []
    for res in kust.get("resources", []):
        target = (directory / res).resolve()
        docs += render(target) if target.is_dir() else load_yaml_docs(target)
    for patch in kust.get("patches", []):
        for pdoc in load_yaml_docs(directory / patch["path"]):
            matches = [i for i, d in enumerate(docs) if _key(d) == _key(pdoc)]
            if len(matches) != 1:
                raise ValueError(f"{directory}: patch {patch['path']} matches {len(matches)}")
            docs[matches[0]] = _merge(docs[matches[0]], pdoc)
    for entry in kust.get("labels", []):
        for doc in docs:
            doc["metadata"] = {
                **doc["metadata"],
                "labels": {**doc["metadata"].get("labels", {}), **entry["pairs"]},
            }
    return docs


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Workload name -> pod spec, for Deployments and StatefulSets."""
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in {"Deployment", "StatefulSet"}
    }


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("initContainers", []) + spec["containers"]


# --- Triton text protobuf ----------------------------------------------------------------------

_TOKEN = re.compile(r'\s*(?:#[^\n]*\n\s*)*("(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+)')


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"cannot tokenize at {text[pos : pos + 30]!r}")
        out.append(m.group(1))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def parse_pbtxt(text: str) -> dict[str, list[Any]]:
    """Text-format protobuf -> {field: [values]}; messages are dicts of the same shape, strings
    unquoted, numbers and enums kept as their token text."""
    toks = _tokens(text)
    pos = 0

    def value() -> Any:
        nonlocal pos
        tok = toks[pos]
        pos += 1
        if tok == "{":
            return message("}")
        if tok.startswith('"'):
            return bytes(tok[1:-1], "utf-8").decode("unicode_escape")
        if tok in "}[]:,":
            raise ValueError(f"unexpected {tok!r}")
        return tok

    def message(end: str | None) -> dict[str, list[Any]]:
        nonlocal pos
        fields: dict[str, list[Any]] = {}
        while pos < len(toks) and toks[pos] != end:
            name = toks[pos]
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"bad field name {name!r}")
            pos += 1
            if toks[pos] == ":":
                pos += 1
            if toks[pos] == "[":
                pos += 1
                while toks[pos] != "]":
                    fields.setdefault(name, []).append(value())
                    if toks[pos] == ",":
                        pos += 1
                pos += 1
            else:
                fields.setdefault(name, []).append(value())
            if pos < len(toks) and toks[pos] in {",", ";"}:
                pos += 1
        if end is not None:
            if pos >= len(toks):
                raise ValueError(f"missing {end!r}")
            pos += 1
        return fields

    result = message(None)
    if pos != len(toks):
        raise ValueError("trailing tokens")
    return result


def parameters(config: dict[str, list[Any]]) -> dict[str, str]:
    return {p["key"][0]: p["value"][0]["string_value"][0] for p in config.get("parameters", [])}
