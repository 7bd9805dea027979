"""The database for `make db` and the tests: the configured server when it answers, otherwise a
private MariaDB instance whose data, socket, log and pid live under .run/mysql."""

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

from orchestrator.devstack import process
from orchestrator.marketdata.db import Database, DatabaseUnavailableError
from orchestrator.settings import PROJECT_ROOT, RUN_DIR, DatabaseSettings

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class DatabaseSetupError(RuntimeError):
    pass


def _find(binary: str) -> str | None:
    return shutil.which(binary) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin") if (p := Path(d) / binary).exists()), None
    )


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

    def ensure_installed(self) -> None:
        if _find("mariadbd") and _find("mariadb-install-db"):
            return
        allowed = os.environ.get("ALLOW_APT_INSTALL", "1") != "0"
        if os.geteuid() != 0 or not shutil.which("apt-get") or not allowed:
            raise DatabaseSetupError(
                "MariaDB is not installed and cannot be installed here: run "
                "`sudo apt-get install mariadb-server`, or set MYSQL_HOST/MYSQL_PORT to a server"
            )
        print("installing Debian's mariadb-server (once per machine)...", flush=True)
        subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / "install-mariadb.sh")], check=True)

    def _initialise(self, user: str) -> None:
        """A fresh data directory; a half-initialised one (interrupted run) is ours to discard."""
        print(f"initialising a private MariaDB data directory in {self.datadir}", flush=True)
        shutil.rmtree(self.datadir, ignore_errors=True)
        self.datadir.mkdir(parents=True)
        result = subprocess.run(
            [
                _find("mariadb-install-db") or "mariadb-install-db",
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
            _find("mariadbd") or "mariadbd",
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

    def _admin(self, sql: str, *, check: bool) -> subprocess.CompletedProcess[str]:
        client = _find("mariadb") or _find("mysql") or "mariadb"
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
    if not private.is_running() and process.port_in_use(settings.port, settings.host):
        raise DatabaseSetupError(
            f"{reason}\nSomething already listens on {settings.address} but refuses these "
            "credentials; fix MYSQL_USER/MYSQL_PASSWORD or choose another MYSQL_PORT."
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
