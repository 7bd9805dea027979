"""Live predictions over WebSocket: one watcher per (symbol, timeframe, strategy), fanned out to
clients.

The bar-close engine hands the hub the predictions of every sweep and the hub publishes them as
they are: no query, no second look-up (`deliver`). A watcher per feed is the fallback for what
no sweep of this replica handed over (the first message of a new feed, a bar another replica
computed): it wakes after each sweep (or every poll interval), reads the newest closed bar the
engine knows and, when no message for it went out yet, takes that bar's prediction + signal.
Either way the encoded message goes on every subscriber's bounded queue with put_nowait. A
client that does not read only loses its own oldest messages (counted); it never slows the
watcher or the other clients. Each connection's own task writes to its socket and sends a
heartbeat when nothing else was sent for `heartbeat_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from litestar import WebSocket, websocket
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath, FromQuery

from orchestrator.api.predictions import (
    PredictionResponse,
    SignalResponse,
    prediction_response,
    resolve_strategy,
    signal_response,
)
from orchestrator.api.resources import Resources
from orchestrator.errors import ErrorBody, describe
from orchestrator.inference.prediction import FeatureKey, Prediction
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import parse_symbol, parse_timeframe
from orchestrator.signals.strategies import DEFAULT_STRATEGY

log = logging.getLogger("orchestrator.stream")

FeedKey = tuple[str, str, str]  # (symbol, timeframe, strategy)
LastBar = Callable[[FeedKey], Awaitable[datetime | None]]
Compute = Callable[[FeedKey], Awaitable[bytes]]
Render = Callable[[FeedKey, Prediction], Awaitable[bytes]]
Watch = Callable[[FeatureKey, bool], None]  # a series got its first feed (True) or lost its last


def _watch_nothing(key: FeatureKey, watching: bool) -> None:
    return None


CLOSE_GOING_AWAY = 1001


class PredictionMessage(msgspec.Struct, tag="prediction", tag_field="type"):
    symbol: str
    timeframe: str
    bar_time: datetime
    prediction: PredictionResponse
    signal: SignalResponse


class ErrorMessage(msgspec.Struct, tag="error", tag_field="type"):
    symbol: str
    timeframe: str
    status: int
    error: ErrorBody


class Heartbeat(msgspec.Struct, tag="heartbeat", tag_field="type"):
    time: float  # server wall clock, seconds since the epoch


@dataclass(eq=False)
class Subscriber:
    key: FeedKey
    queue: asyncio.Queue[bytes | None]
    dropped: int = 0

    def offer(self, message: bytes | None) -> None:
        """Never blocks: a full queue loses its oldest message (the client is behind)."""
        while True:
            try:
                self.queue.put_nowait(message)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()
                self.dropped += 1


@dataclass(eq=False)
class Feed:
    subscribers: set[Subscriber] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    last_bar: datetime | None = None  # the newest bar whose message went out
    handed_bar: datetime | None = None  # a newer one a sweep handed over, message being built
    last_message: bytes | None = None

    def has(self, bar: datetime) -> bool:
        """Whether `bar` (or a newer one) was sent or is being sent from a sweep."""
        return any(known is not None and known >= bar for known in (self.last_bar, self.handed_bar))


class StreamSummary(msgspec.Struct):
    feeds: int  # (symbol, timeframe, strategy) feeds being watched
    clients: int
    computations: int  # messages a watcher looked up and sent (what no sweep handed over)
    delivered: int  # messages published straight from a sweep's predictions
    messages_sent: int
    messages_dropped: int  # oldest messages discarded for clients that fell behind
    errors: int


@dataclass
class StreamStats:
    computations: int = 0
    delivered: int = 0
    messages_sent: int = 0
    messages_dropped: int = 0
    errors: int = 0


class StreamHub:
    def __init__(
        self,
        last_bar: LastBar,
        compute: Compute,
        *,
        render: Render | None = None,
        watch: Watch = _watch_nothing,
        poll_interval_s: float = 1.0,
        queue_size: int = 32,
    ) -> None:
        self._last_bar = last_bar
        self._watch_hook = watch
        self._compute = compute
        self._render = render
        self.poll_interval_s = poll_interval_s
        self.queue_size = queue_size
        self.feeds: dict[FeedKey, Feed] = {}
        self._series: Counter[tuple[str, str]] = Counter()  # feeds per (symbol, timeframe)
        self.stats = StreamStats()
        self._tick: asyncio.Future[None] | None = None

    def wake(self) -> None:
        """Every watcher checks for a new bar now instead of at its next poll."""
        if self._tick is not None and not self._tick.done():
            self._tick.set_result(None)
        self._tick = None

    async def _pause(self) -> None:
        if self._tick is None:
            self._tick = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._tick), self.poll_interval_s)

    def subscribe(self, key: FeedKey) -> Subscriber:
        subscriber = Subscriber(key, asyncio.Queue(self.queue_size))
        feed = self.feeds.setdefault(key, Feed())
        feed.subscribers.add(subscriber)
        if feed.last_message is not None:
            subscriber.offer(feed.last_message)  # newcomers see the current prediction at once
        if feed.task is None:
            self._series[key[:2]] += 1
            if self._series[key[:2]] == 1:
                self._watch_hook((key[0], parse_timeframe(key[1])), True)
            feed.task = asyncio.create_task(self._watch(key, feed), name=f"stream:{key}")
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.stats.messages_dropped += subscriber.dropped
        subscriber.dropped = 0
        feed = self.feeds.get(subscriber.key)
        if feed is None:
            return
        feed.subscribers.discard(subscriber)
        if not feed.subscribers:
            if feed.task is not None:
                feed.task.cancel()
            del self.feeds[subscriber.key]
            self._series[subscriber.key[:2]] -= 1
            if not self._series[subscriber.key[:2]]:
                del self._series[subscriber.key[:2]]
                symbol, timeframe = subscriber.key[:2]
                self._watch_hook((symbol, parse_timeframe(timeframe)), False)

    def publish(self, feed: Feed, message: bytes, *, remember: bool = True) -> None:
        """To every subscriber; `remember` keeps it for newcomers (errors are not kept)."""
        feed.last_message = message if remember else None
        for subscriber in tuple(feed.subscribers):
            subscriber.offer(message)

    def deliver(self, predictions: list[Prediction]) -> None:
        """Publishes a sweep's predictions to the feeds that watch them (called by the engine
        after each sweep; the messages are built in one task, off the sweep)."""
        if self._render is None or not self.feeds:
            return
        by_series = {(p.symbol, p.timeframe): p for p in predictions}
        due = [
            (key, feed, by_series[key[:2]])
            for key, feed in self.feeds.items()
            if key[:2] in by_series and not feed.has(by_series[key[:2]].bar_time)
        ]
        for _, feed, prediction in due:  # the watchers, woken next, leave these bars alone
            feed.handed_bar = prediction.bar_time
        if due:
            asyncio.get_running_loop().create_task(self._deliver(due), name="stream:deliver")

    async def _deliver(self, due: list[tuple[FeedKey, Feed, Prediction]]) -> None:
        assert self._render is not None
        for key, feed, prediction in due:
            bar = prediction.bar_time
            message: bytes | None = None
            try:
                message = await self._render(key, prediction)
            except Exception:  # the watcher retries this feed through the request path
                log.exception("could not render the stream message for %s", key)
            if feed.handed_bar == bar:
                feed.handed_bar = None
            sent = feed.last_bar
            if message is None or self.feeds.get(key) is not feed or (sent and sent >= bar):
                continue
            self.stats.delivered += 1
            self.publish(feed, message)
            feed.last_bar = bar

    async def _watch(self, key: FeedKey, feed: Feed) -> None:
        symbol, timeframe, _ = key
        last_error: bytes | None = None
        while True:
            try:
                last_bar = await self._last_bar(key)
                sent = feed.last_bar
                # Only bars no sweep sent or is sending (the engine's index may even be behind).
                if last_bar is not None and not feed.has(last_bar):
                    message = await self._compute(key)
                    if feed.last_bar == sent:  # a sweep delivered nothing newer meanwhile
                        self.stats.computations += 1
                        self.publish(feed, message)
                        feed.last_bar = last_bar
                    last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reported to the clients, retried on the next poll
                status, body = describe(exc)
                message = msgspec.json.encode(ErrorMessage(symbol, timeframe, status, body))
                if message != last_error:  # say it once, not every poll
                    self.stats.errors += 1
                    self.publish(feed, message, remember=False)
                    last_error = message
            await self._pause()

    async def close(self) -> None:
        """Stop the watchers and tell every connection to close (a None on its queue)."""
        tasks = [feed.task for feed in self.feeds.values() if feed.task is not None]
        for feed in self.feeds.values():
            for subscriber in feed.subscribers:
                subscriber.offer(None)
        for task in tasks:
            task.cancel()
        loop = asyncio.get_running_loop()
        for task in tasks:
            if task.get_loop() is not loop:
                continue  # subscribed from another loop (a test's): that loop ends it
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def snapshot(self) -> StreamSummary:
        pending = sum(s.dropped for f in self.feeds.values() for s in f.subscribers)
        return StreamSummary(
            feeds=len(self.feeds),
            clients=sum(len(f.subscribers) for f in self.feeds.values()),
            computations=self.stats.computations,
            delivered=self.stats.delivered,
            messages_sent=self.stats.messages_sent,
            messages_dropped=self.stats.messages_dropped + pending,
            errors=self.stats.errors,
        )


def hub_for_app(resources: Resources, *, poll_interval_s: float, queue_size: int) -> StreamHub:
    """The hub fed by the bar-close engine: each sweep's predictions are published as handed
    over; watchers wake when a sweep finishes and read the newest closed bar the engine has seen
    (no query) for what was not. The message is built from the same prediction /api/predict
    serves, encoded once per (prediction, strategy)."""
    engine = resources.engine

    async def last_bar(key: FeedKey) -> datetime | None:
        timeframe = parse_timeframe(key[1])
        known = engine.series.newest((key[0], timeframe))
        if known is not None:
            return known
        store = BarStore(await resources.database())  # before the engine's first poll
        return await store.last_closed_bar_time(key[0], timeframe)

    async def compute(key: FeedKey) -> bytes:
        # Feeds of one symbol with different strategies share the prediction.
        return await render(key, await resources.predictions.latest(key[0], key[1]))

    async def render(key: FeedKey, run: Prediction) -> bytes:
        symbol, timeframe, strategy = key
        asset_class = await resources.predictions.asset_class(symbol)
        week = await resources.predictions.trading_week(symbol, timeframe)

        def message() -> PredictionMessage:
            prediction = prediction_response(run, week=week)
            signal = signal_response(run, resolve_strategy(strategy), asset_class)
            return PredictionMessage(
                run.symbol, run.timeframe, prediction.bar_time, prediction, signal
            )

        return run.encoded_once(f"ws:{strategy}", message)

    hub = StreamHub(
        last_bar,
        compute,
        render=render,
        watch=engine.watch,
        poll_interval_s=poll_interval_s,
        queue_size=queue_size,
    )

    def after_sweep(predictions: list[Prediction]) -> None:
        hub.deliver(predictions)
        hub.wake()

    engine.on_predictions(after_sweep)
    return hub


async def _send_loop(
    socket: WebSocket[Any, Any, Any], subscriber: Subscriber, hub: StreamHub, heartbeat_s: float
) -> None:
    while True:
        try:
            message = await asyncio.wait_for(subscriber.queue.get(), timeout=heartbeat_s)
        except TimeoutError:
            message = msgspec.json.encode(Heartbeat(time.time()))
        if message is None:
            return
        await socket.send_data(message.decode(), mode="text")
        hub.stats.messages_sent += 1


async def _until_disconnect(socket: WebSocket[Any, Any, Any]) -> None:
    """Drain what the client sends (pings, anything); returns when it goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await socket.receive_data(mode="text")


@websocket("/ws/{symbol:str}", summary="Live prediction + signal for every new bar")
async def stream_socket(
    socket: WebSocket[Any, Any, Any],
    resources: NamedDependency[Resources],
    symbol: FromPath[str],
    timeframe: FromQuery[str] = "5m",
    strategy: FromQuery[str] = DEFAULT_STRATEGY,
) -> None:
    state = socket.app.state
    await socket.accept()
    try:
        sym, tf = parse_symbol(symbol), parse_timeframe(timeframe).value
        resolve_strategy(strategy)
        await BarStore(await resources.database()).get_symbol(sym)  # 404s before watching
    except Exception as exc:
        status, body = describe(exc)
        await socket.send_data(
            msgspec.json.encode(ErrorMessage(symbol, timeframe, status, body)).decode()
        )
        await socket.close(code=4000 + status, reason=body.message[:120])
        return
    hub: StreamHub = state.stream
    settings = resources.settings.api
    subscriber = hub.subscribe((sym, tf, strategy))
    sender = asyncio.create_task(_send_loop(socket, subscriber, hub, settings.ws_heartbeat_s))
    receiver = asyncio.create_task(_until_disconnect(socket))
    try:
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        if sender in done and sender.exception() is None:
            await socket.close(code=CLOSE_GOING_AWAY, reason="server shutting down")
    except Exception as exc:  # the socket broke under us
        log.debug("stream for %s ended: %s", sym, exc)
    finally:
        hub.unsubscribe(subscriber)
        for task in (sender, receiver):
            task.cancel()
        for task in (sender, receiver):
            with contextlib.suppress(BaseException):
                await task
