"""Chromium for the dashboard's browser tests: Debian's package, installed when missing as
MariaDB and Redis are (Playwright's own browser download is not reachable from every machine, so
Playwright drives this binary through `executable_path`)."""

from __future__ import annotations

import os
import shutil

from orchestrator.devstack import process
from orchestrator.errors import ServiceUnavailableError

BINARIES = ("chromium", "chromium-browser")
PACKAGE = "chromium"


class ChromiumSetupError(ServiceUnavailableError):
    """No headless Chromium could be found or installed (exit 3)."""


def find_chromium() -> str | None:
    return next((path for name in BINARIES if (path := process.find_binary(name))), None)


def ensure_chromium() -> str:
    """The chromium binary's path, installing Debian's package first when it is missing."""
    found = find_chromium()
    if found:
        return found
    allowed = os.environ.get("ALLOW_APT_INSTALL", "1") != "0"
    if os.geteuid() != 0 or not shutil.which("apt-get") or not allowed:
        raise ChromiumSetupError(
            "chromium is not installed and cannot be installed here: run "
            "`sudo apt-get install chromium` (the dashboard's browser tests drive it)"
        )
    print("installing Debian's chromium (once per machine)...", flush=True)
    process.install_debian_packages(PACKAGE)
    found = find_chromium()
    if not found:
        raise ChromiumSetupError(f"`apt-get install {PACKAGE}` ran, yet no chromium is on PATH")
    return found


def launch_args() -> list[str]:
    """Chromium refuses to start its sandbox as root (CI containers): run without it there."""
    return ["--no-sandbox"] if os.geteuid() == 0 else []
