"""Atomic file writes: readers see the old file or the whole new one, never half of it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_file(path: Path, *, text: bool = False, mode: int | None = None) -> Iterator[IO[Any]]:
    """A stream to a temporary file beside `path`, renamed over it when the block succeeds and
    removed when it fails. `mode` sets permissions (mkstemp creates files as 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode is not None:
            os.fchmod(handle, mode)
        stream: IO[Any] = os.fdopen(handle, "w", newline="") if text else os.fdopen(handle, "wb")
        with stream:
            yield stream
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes, *, mode: int | None = None) -> None:
    with atomic_file(path, mode=mode) as stream:
        stream.write(data)
