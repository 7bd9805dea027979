"""Runtime settings, read once from the environment (documented in README)."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from orchestrator.errors import SettingsError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = PROJECT_ROOT / ".run"
DEFAULT_SNAPSHOT_DIR = RUN_DIR / "feature-states"
MAX_SEED_PROCESSES = 8  # SEED_PROCESSES defaults to the cores, up to this many


def env_text(name: str, default: str = "") -> str:
    """The variable as set, or `default` when unset (every setting of the engine, the API's, the
    jobs', Polygon's, the real data's, is read through the env_* functions here: tests/deploy
    finds the settings by them)."""
    return os.environ.get(name, default)


def _number(name: str, default: float, kind: type[int] | type[float], positive: bool) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    what = "a whole number" if kind is int else "a number"
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(
            f"environment variable {name}={raw!r} must be {what} (e.g. {name}={default!r}); "
            "unset it for that default"
        ) from None
    if positive and value <= 0:
        raise SettingsError(
            f"environment variable {name}={raw!r} must be above 0 (default {default!r})"
        )
    return value


def env_int(name: str, default: int, *, positive: bool = False) -> int:
    """An integer setting; a malformed value is a SettingsError naming it and the default."""
    return int(_number(name, default, int, positive))


def env_float(name: str, default: float, *, positive: bool = False) -> float:
    """A number setting; a malformed value is a SettingsError naming it and the default."""
    return float(_number(name, default, float, positive))


def env_list(name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """A comma-separated setting, its items stripped and empty ones dropped."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (case-insensitive); anything else is a SettingsError listing them."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        raise SettingsError(
            f"environment variable {name}={raw!r} must be one of {', '.join(choices)} "
            f"(default {default})"
        )
    return raw


class DatabaseSettings(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "trading"
    password: str = "trading"
    database: str = "trading"
    pool_min_size: int = 1
    pool_max_size: int = 10
    connect_timeout_s: float = 5.0
    acquire_timeout_s: float = 5.0
    query_timeout_s: float = 30.0
    # How long ingest keeps retrying a batch while the database is away before it gives up.
    write_retry_s: float = 120.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def from_env(cls) -> DatabaseSettings:
        d = cls()
        return msgspec.structs.replace(
            d,
            host=env_text("MYSQL_HOST", d.host),
            port=env_int("MYSQL_PORT", d.port),
            user=env_text("MYSQL_USER", d.user),
            password=env_text("MYSQL_PASSWORD", d.password),
            database=env_text("MYSQL_DATABASE", d.database),
            pool_max_size=env_int("MYSQL_POOL_SIZE", d.pool_max_size),
            acquire_timeout_s=env_float("MYSQL_ACQUIRE_TIMEOUT_S", d.acquire_timeout_s),
            query_timeout_s=env_float("MYSQL_QUERY_TIMEOUT_S", d.query_timeout_s),
            write_retry_s=env_float("MYSQL_WRITE_RETRY_S", d.write_retry_s),
        )


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SHARED_MEMORY_MODES = ("auto", "on", "off")


class TritonSettings(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    model_repository: str = str(PROJECT_ROOT / "model_repository" / "cpu")
    request_timeout_s: float = 10.0
    # Every Triton a model switch must reach ("host:port", a host alone takes grpc_port; a name
    # that resolves to several addresses, such as a headless Kubernetes Service, counts each).
    # Empty: the one at host:grpc_port.
    peers: tuple[str, ...] = ()
    # Request inputs through system shared memory (inference/input_regions.py): "auto" when
    # Triton's host is this one's loopback, "on" (Triton elsewhere on this host, sharing
    # /dev/shm), "off" (inputs inside the gRPC message).
    shared_memory: str = "auto"

    @property
    def uses_shared_memory(self) -> bool:
        if self.shared_memory == "auto":
            return self.host in LOOPBACK_HOSTS
        return self.shared_memory == "on"

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @classmethod
    def from_env(cls) -> TritonSettings:
        d = cls()
        grpc_port = env_int("TRITON_GRPC_PORT", d.grpc_port)
        return msgspec.structs.replace(
            d,
            host=env_text("TRITON_HOST", d.host),
            http_port=env_int("TRITON_HTTP_PORT", d.http_port),
            grpc_port=grpc_port,
            metrics_port=env_int("TRITON_METRICS_PORT", d.metrics_port),
            model_repository=env_text("MODEL_REPOSITORY", d.model_repository),
            request_timeout_s=env_float("TRITON_TIMEOUT_S", d.request_timeout_s),
            peers=_peers(env_list("TRITON_PEERS"), grpc_port),
            shared_memory=env_choice("TRITON_SHARED_MEMORY", d.shared_memory, SHARED_MEMORY_MODES),
        )


def _peers(items: tuple[str, ...], grpc_port: int) -> tuple[str, ...]:
    """TRITON_PEERS as "host:port" entries (a host alone takes the gRPC port)."""
    entries = []
    for item in items:
        host, colon, port = item.rpartition(":")
        if not colon:
            entries.append(f"{item}:{grpc_port}")
        elif host and port.isdigit():
            entries.append(item)
        else:
            raise SettingsError(
                f"environment variable TRITON_PEERS has {item!r}, whose port is not a number: "
                "give host or host:port entries, comma-separated (e.g. TRITON_PEERS=triton-peers)"
            )
    return tuple(entries)


class RedisSettings(msgspec.Struct, frozen=True):
    """Shared state of all replicas: rate-limit counters, the prediction cache, bar-close events,
    the bar-close leader lock and the job queue."""

    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "tme"  # every key this service writes starts with it
    timeout_s: float = 0.5  # one Redis call; past it the call counts as Redis being down

    @classmethod
    def from_env(cls) -> RedisSettings:
        d = cls()
        return msgspec.structs.replace(
            d,
            url=env_text("REDIS_URL", d.url),
            key_prefix=env_text("REDIS_KEY_PREFIX", d.key_prefix),
            timeout_s=env_float("REDIS_TIMEOUT_S", d.timeout_s),
        )


class ApiSettings(msgspec.Struct, frozen=True):
    host: str = "0.0.0.0"
    port: int = 8080
    internal_api_key: str = ""  # when set, /api/* and /ws need it (X-API-Key or Bearer)
    jwt_secret: str = ""  # when set, HS256 JWTs signed with it are accepted too
    # Model promotion and rollback need it (or a JWT whose `scope` includes "admin"); with no
    # key, JWT secret or admin key set at all, the API is open (development).
    admin_api_key: str = ""
    cors_origins: tuple[str, ...] = ("http://localhost:5173",)
    rate_limit_per_minute: int = 1200
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    max_body_bytes: int = 1_048_576
    bar_poll_interval_s: float = 0.05  # how often the bar-close engine looks for new bars
    # Bar-close sweeps in flight: with 2 the next sweep's features overlap this one's Triton
    # request (docs/benchmarks.md, Ten thousand symbols); 1 runs them one after another.
    sweeps_in_flight: int = 2
    ws_poll_interval_s: float = 1.0  # how often the stream checks each watched symbol for a new bar
    ws_heartbeat_s: float = 15.0  # a heartbeat message after this long without one
    ws_queue_size: int = (
        32  # messages a slow WebSocket client may fall behind before losing old ones
    )
    # Where the bar-close engine keeps its feature-state snapshot (one file per API port), so a
    # restart resumes instead of re-seeding; "" (a Settings built in code) turns snapshots off,
    # STATE_SNAPSHOT_DIR defaults to DEFAULT_SNAPSHOT_DIR.
    state_snapshot_dir: str = ""
    state_snapshot_interval_s: float = 600.0  # also written on shutdown
    # Worker processes that seed feature states when a sweep has many to seed (a cold start;
    # inference/seeding.py); 1 seeds in a thread of the API process.
    seed_processes: int = 1

    @classmethod
    def from_env(cls) -> ApiSettings:
        d = cls()
        return msgspec.structs.replace(
            d,
            host=env_text("API_HOST", d.host),
            port=env_int("API_PORT", d.port),
            internal_api_key=env_text("INTERNAL_API_KEY", ""),
            jwt_secret=env_text("JWT_SECRET", ""),
            admin_api_key=env_text("ADMIN_API_KEY", ""),
            cors_origins=env_list("CORS_ORIGINS", d.cors_origins),
            rate_limit_per_minute=env_int("RATE_LIMIT_PER_MINUTE", d.rate_limit_per_minute),
            trusted_proxies=env_list("TRUSTED_PROXIES", d.trusted_proxies),
            max_body_bytes=env_int("MAX_BODY_BYTES", d.max_body_bytes),
            bar_poll_interval_s=env_float("BAR_POLL_INTERVAL_S", d.bar_poll_interval_s),
            sweeps_in_flight=env_int("SWEEPS_IN_FLIGHT", d.sweeps_in_flight, positive=True),
            ws_poll_interval_s=env_float("WS_POLL_INTERVAL_S", d.ws_poll_interval_s),
            ws_heartbeat_s=env_float("WS_HEARTBEAT_S", d.ws_heartbeat_s),
            ws_queue_size=env_int("WS_QUEUE_SIZE", d.ws_queue_size),
            state_snapshot_dir=env_text("STATE_SNAPSHOT_DIR", str(DEFAULT_SNAPSHOT_DIR)),
            state_snapshot_interval_s=env_float(
                "STATE_SNAPSHOT_INTERVAL_S", d.state_snapshot_interval_s
            ),
            seed_processes=env_int(
                "SEED_PROCESSES",
                min(MAX_SEED_PROCESSES, len(os.sched_getaffinity(0))),
                positive=True,
            ),
        )


class Settings(msgspec.Struct, frozen=True):
    db: DatabaseSettings
    triton: TritonSettings
    api: ApiSettings
    redis: RedisSettings = RedisSettings()

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            db=DatabaseSettings.from_env(),
            triton=TritonSettings.from_env(),
            api=ApiSettings.from_env(),
            redis=RedisSettings.from_env(),
        )
