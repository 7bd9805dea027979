"""The database for `make db` and the tests: the configured server when it answers, otherwise a
private MariaDB instance whose data, socket, log and pid live under .run/mysql.

The test suite may also run beside another checkout's stack: when the configured address is
taken by a server it cannot (or must not) use, it starts a private instance of its own on a free
port for the session (ensure_test_database).
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncmy
import msgspec
from asyncmy.errors import Error as MySQLError

from orchestrator.devstack import process
from orchestrator.errors import ServiceUnavailableError
from orchestrator.marketdata.db import Database, DatabaseUnavailableError, error_code
from orchestrator.settings import RUN_DIR, DatabaseSettings

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class DatabaseSetupError(ServiceUnavailableError):
    """No usable database server could be reached or started (exit 3)."""


async def _try_connect(settings: DatabaseSettings) -> str | None:
    """None when the server answers with these credentials, else the reason it did not."""
    try:
        db = await Database.connect(settings)
    except DatabaseUnavailableError as exc:
        return str(exc)
    try:
        await db.ping()
    finally:
        await db.close()
    return None


@dataclass
class PrivateMariaDB:
    port: int
    run_dir: Path = RUN_DIR

    @property
    def base(self) -> Path:
        return self.run_dir / "mysql"

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def pid_path(self) -> Path:
        return self.base / "mariadbd.pid"

    @property
    def log_path(self) -> Path:
        return self.base / "error.log"

    @property
    def socket_path(self) -> Path:
        preferred = self.base / "mysqld.sock"
        if len(str(preferred)) < 100:  # unix socket paths are limited to 108 bytes
            return preferred
        digest = hashlib.sha1(str(self.base).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"trading-ml-{digest}.sock"

    def is_running(self) -> bool:
        return process.running_pid(self.pid_path, "mariadbd") is not None

    def serves(self, port: int) -> bool:
        """Whether this instance runs and listens on `port` (not merely some port)."""
        pid = process.running_pid(self.pid_path, "mariadbd")
        if pid is None:
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return f"--port={port}".encode() in cmdline

    def ensure_installed(self) -> None:
        if process.find_binary("mariadbd") and process.find_binary("mariadb-install-db"):
            return
        allowed = os.environ.get("ALLOW_APT_INSTALL", "1") != "0"
        if os.geteuid() != 0 or not shutil.which("apt-get") or not allowed:
            raise DatabaseSetupError(
                "MariaDB is not installed and cannot be installed here: run "
                "`sudo apt-get install mariadb-server`, or set MYSQL_HOST/MYSQL_PORT to a server"
            )
        print("installing Debian's mariadb-server (once per machine)...", flush=True)
        process.install_debian_packages("mariadb-server", "mariadb-client")

    def _initialise(self, user: str) -> None:
        """A fresh data directory; a half-initialised one (interrupted run) is ours to discard."""
        print(f"initialising a private MariaDB data directory in {self.datadir}", flush=True)
        shutil.rmtree(self.datadir, ignore_errors=True)
        self.datadir.mkdir(parents=True)
        result = subprocess.run(
            [
                process.find_binary("mariadb-install-db") or "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--user={user}",
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            shutil.rmtree(self.datadir, ignore_errors=True)
            raise DatabaseSetupError(
                "mariadb-install-db failed:\n" + (result.stderr or result.stdout)[-2000:]
            )

    def start(self, timeout_s: float = 60.0) -> None:
        if self.is_running():
            return
        self.ensure_installed()
        if process.port_in_use(self.port):
            raise DatabaseSetupError(
                f"port {self.port} is taken by another process that does not accept the "
                "configured credentials; stop it or set MYSQL_PORT to a free port"
            )
        user = getpass.getuser()
        if not (self.datadir / "mysql").is_dir():
            self._initialise(user)
        command = [
            process.find_binary("mariadbd") or "mariadbd",
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket_path}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self.base / 'mariadbd.server.pid'}",
            f"--log-error={self.log_path}",
            f"--user={user}",
            "--skip-log-bin",
            "--character-set-server=utf8mb4",
            "--default-time-zone=+00:00",
            "--innodb-buffer-pool-size=512M",
            "--innodb-log-file-size=256M",
            "--innodb-flush-log-at-trx-commit=2",
            "--max-allowed-packet=64M",
            "--max-connections=200",
        ]
        process.spawn(
            command, env=dict(os.environ), log_path=self.base / "stdout.log", pid_path=self.pid_path
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._admin("SELECT 1", check=False).returncode == 0:
                return
            if not self.is_running():
                break
            time.sleep(0.25)
        raise DatabaseSetupError(
            f"the private MariaDB did not start; last lines of {self.log_path}:\n"
            + process.log_tail(self.log_path)
        )

    def provision(self, settings: DatabaseSettings, databases: list[str]) -> None:
        """Creates the application user and databases (idempotent)."""
        user = settings.user.replace("'", "''")
        password = settings.password.replace("'", "''")
        statements = []
        for host in ("127.0.0.1", "localhost", "::1"):
            statements.append(
                f"CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED BY '{password}'"
            )
            statements.append(f"ALTER USER '{user}'@'{host}' IDENTIFIED BY '{password}'")
            for name in databases:
                statements.append(f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{user}'@'{host}'")
        for name in databases:
            statements.insert(0, f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
        self._admin(";\n".join(statements) + ";", check=True)

    def stop(self) -> bool:
        return process.stop(self.pid_path, "mariadbd", timeout_s=60)

    def admin(self, sql: str) -> None:
        """Runs statements as the server's administrator (the OS user, over the socket)."""
        self._admin(sql, check=True)

    def _admin(self, sql: str, *, check: bool) -> subprocess.CompletedProcess[str]:
        client = process.find_binary("mariadb") or process.find_binary("mysql") or "mariadb"
        # The client honours MYSQL_HOST/MYSQL_TCP_PORT/MYSQL_PWD: scrub them and force the socket,
        # where unix_socket authentication maps the OS user to the database admin.
        env = {k: v for k, v in os.environ.items() if not k.startswith("MYSQL_")}
        result = subprocess.run(
            [
                client,
                "--no-defaults",
                "--protocol=socket",
                f"--socket={self.socket_path}",
                "-u",
                getpass.getuser(),
                "--batch",
                "-e",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        if check and result.returncode != 0:
            raise DatabaseSetupError(f"MariaDB admin statement failed: {result.stderr.strip()}")
        return result


@dataclass
class _Probe:
    """What the server at an address says about a user and a database."""

    usable: bool  # the user can connect to the database (after creating it if allowed)
    reason: str  # why not, when not usable
    logged_in: bool = False  # the server accepted the credentials without a database
    account: str = ""  # the account the server matched, as CURRENT_USER() reports it
    datadir: str = ""  # the server's data directory (tells another checkout's private instance)


async def _probe(settings: DatabaseSettings) -> _Probe:
    """Connects without a database, creates the database when the user may, and says why the
    database cannot be used when it cannot."""
    try:
        conn = await asyncio.wait_for(
            asyncmy.connect(
                host=settings.host,
                port=settings.port,
                user=settings.user,
                password=settings.password,
                connect_timeout=settings.connect_timeout_s,
                autocommit=True,
            ),
            settings.connect_timeout_s + 1,
        )
    except (OSError, EOFError, MySQLError) as exc:
        return _Probe(False, str(DatabaseUnavailableError(settings, _reason(exc))))
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT CURRENT_USER(), @@datadir")
            account, datadir = (await cur.fetchall())[0]
            try:
                await cur.execute(
                    f"CREATE DATABASE IF NOT EXISTS `{settings.database}` CHARACTER SET utf8mb4"
                )
                await cur.execute(f"USE `{settings.database}`")
            except MySQLError as exc:
                return _Probe(False, _reason(exc), True, str(account), str(datadir))
    finally:
        conn.close()
    return _Probe(True, "", True, str(account), str(datadir))


def _reason(exc: BaseException) -> str:
    code = error_code(exc)
    text = str(exc.args[-1]) if isinstance(exc, MySQLError) and exc.args else str(exc)
    return f"({code}) {text}" if code else text or type(exc).__name__


_TEST_DATABASE_HINT = (
    "(the suite drops and re-creates its tables there), or set MYSQL_TEST_DATABASE to a database "
    "that user may create or use."
)


def missing_grant_message(
    settings: DatabaseSettings, probe: _Probe, hint: str = _TEST_DATABASE_HINT
) -> str:
    """Which grant the user lacks on the database, and how to choose another database."""
    user, _, host = probe.account.rpartition("@")
    return (
        f"user {settings.user!r} can log in to the MariaDB/MySQL server at {settings.address} "
        f"but may not create or use the database `{settings.database}` ({probe.reason}). "
        f"As an administrator of that server run:  GRANT ALL ON `{settings.database}`.* TO "
        f"'{user or settings.user}'@'{host or '%'}';  {hint}"
    )


def _explain(settings: DatabaseSettings, probe: _Probe, hint: str = _TEST_DATABASE_HINT) -> str:
    if probe.logged_in:
        return missing_grant_message(settings, probe, hint)
    return (
        f"{probe.reason}\nSomething already listens on {settings.address} but refuses these "
        "credentials; fix MYSQL_USER/MYSQL_PASSWORD or choose another MYSQL_PORT."
    )


def _another_checkouts_instance(probe: _Probe, ours: PrivateMariaDB) -> bool:
    """A private MariaDB of another clone (its data under <clone>/.run/mysql/data): its test
    database belongs to that clone's test runs, so this one must not reset it."""
    datadir = Path(probe.datadir.rstrip("/")) if probe.datadir else None
    return (
        datadir is not None
        and datadir.parts[-3:] == (".run", "mysql", "data")
        and datadir.resolve() != ours.datadir.resolve()
    )


def ensure_database(settings: DatabaseSettings, extra_databases: tuple[str, ...] = ()) -> str:
    """Makes `settings` connectable; returns a line saying which server is used."""
    reason = asyncio.run(_try_connect(settings))
    if reason is None:
        return (
            f"using the MariaDB/MySQL server at {settings.address} (database {settings.database})"
        )
    if settings.host not in _LOCAL_HOSTS:
        raise DatabaseSetupError(reason)
    private = PrivateMariaDB(port=settings.port)
    if not private.serves(settings.port) and process.port_in_use(settings.port, settings.host):
        probe = asyncio.run(_probe(settings))  # creates the database when the user may
        if not probe.usable:
            hint = "or choose another database that user may create or use."
            raise DatabaseSetupError(_explain(settings, probe, hint))
        return (
            f"using the MariaDB/MySQL server at {settings.address} "
            f"(created database {settings.database})"
        )
    private.start()
    private.provision(settings, [settings.database, *extra_databases])
    reason = asyncio.run(_try_connect(settings))
    if reason is not None:
        raise DatabaseSetupError(reason)
    return (
        f"started the private MariaDB at {settings.address} (data in {private.datadir}, "
        f"database {settings.database})"
    )


@dataclass
class SuiteDatabase:
    """The server the test suite uses, and the private instance it started for the session."""

    settings: DatabaseSettings
    note: str
    started: PrivateMariaDB | None = None  # stop it when the session ends


def ensure_test_database(settings: DatabaseSettings, fallback_dir: Path | None) -> SuiteDatabase:
    """A server where `settings.database` can be dropped and re-created by the tests.

    In order: this checkout's private MariaDB (`make db`); the configured server, when the user
    can create and use the database there and it is not another checkout's private instance;
    this checkout's private MariaDB started at the configured address when nothing listens
    there. Otherwise, with `fallback_dir`, a private MariaDB under it on a free port for this
    session; without (MYSQL_* chosen explicitly), DatabaseSetupError naming the missing grant."""
    local = settings.host in _LOCAL_HOSTS
    ours = PrivateMariaDB(port=settings.port)
    if local and ours.serves(settings.port):
        ours.provision(settings, [settings.database])
        return SuiteDatabase(settings, f"this checkout's private MariaDB at {settings.address}")
    if local and not process.port_in_use(settings.port, settings.host):
        ours.start()
        ours.provision(settings, [settings.database])
        note = f"started this checkout's private MariaDB at {settings.address}"
        return SuiteDatabase(settings, note, started=ours)
    probe = asyncio.run(_probe(settings))
    foreign = probe.usable and _another_checkouts_instance(probe, ours)
    if probe.usable and not foreign:
        return SuiteDatabase(settings, f"the MariaDB/MySQL server at {settings.address}")
    if fallback_dir is None:
        raise DatabaseSetupError(_explain(settings, probe))
    why = (
        f"another checkout's private MariaDB (data in {probe.datadir}) answers at "
        f"{settings.address}"
        if foreign
        else _explain(settings, probe)
    )
    (port,) = process.free_ports(1)
    server = PrivateMariaDB(port=port, run_dir=fallback_dir)
    moved = msgspec.structs.replace(settings, host="127.0.0.1", port=port)
    server.start()
    server.provision(moved, [moved.database])
    note = f"{why}\n-> started a private MariaDB for this session at {moved.address}"
    return SuiteDatabase(moved, note, started=server)
