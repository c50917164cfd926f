"""Patroni and etcd on this machine, for the failover test (tests/test_failover.py).

etcd (Debian's ``etcd-server``) and one Patroni per PostgreSQL node, each in a process group
of its own; Patroni runs as the ``postgres`` user (runuser) on Debian's Python 3.11 with
the project's virtualenv on its path (the virtualenv's own interpreter may live where the
postgres user cannot reach it), and bootstraps, clones (pg_basebackup) and promotes the
nodes itself. ``PatroniCluster`` is a context manager: every process it started is killed,
and every directory removed, however the block ends."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.pg import _as_postgres, find_pg_bin
from tests.replication import wait_for
from tests.servers import free_port

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
SYSTEM_PYTHON = "/usr/bin/python3"


def missing() -> str | None:
    """What the failover test lacks on this machine, or ``None``."""
    if find_pg_bin() is None:
        return "PostgreSQL binaries"
    if not Path(ETCD).exists():
        return "etcd (Debian package etcd-server)"
    try:
        import patroni  # noqa: F401
    except ImportError:
        return "patroni (the dev dependency group)"
    if _as_postgres():
        if not Path(SYSTEM_PYTHON).exists():
            return SYSTEM_PYTHON
        version = subprocess.run(
            [SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if version != str(sys.version_info[:2]):  # it loads the virtualenv's compiled parts
            return f"{SYSTEM_PYTHON} of Python {sys.version_info[:2]} (it is {version})"
    return None


@dataclass
class Member:
    name: str
    root: Path
    pg_port: int
    api_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def status(self, path: str) -> int:
        """The HTTP status of Patroni's health check ``path`` (/primary, /sync, ...)."""
        try:
            with urllib.request.urlopen(self.api + path, timeout=2) as r:  # noqa: S310
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    def info(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(self.api + "/patroni", timeout=2) as r:  # noqa: S310
                out: dict[str, Any] = json.loads(r.read())
                return out
        except urllib.error.HTTPError as exc:
            out = json.loads(exc.read())
            return out

    def postmaster_pid(self) -> int | None:
        with suppress(OSError, ValueError, IndexError):
            return int((self.data / "postmaster.pid").read_text().split()[0])
        return None

    def kill9(self) -> None:
        """The host dies: ``kill -9`` of Patroni and of its PostgreSQL at once."""
        pid = self.postmaster_pid()
        if self.proc is not None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if pid is not None:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        pg_bin = find_pg_bin()
        assert pg_bin is not None
        done = subprocess.run(
            [
                str(pg_bin / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.pg_port),
                "-U",
                "postgres",
                "-d",
                dbname,
                "-v",
                "ON_ERROR_STOP=1",
                "-qAtc",
                sql,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return done.stdout.strip()

    def log(self) -> str:
        path = self.root / "patroni.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""


@dataclass
class PatroniCluster:
    """etcd and ``size`` Patroni-managed PostgreSQL 15 nodes in synchronous_mode."""

    size: int = 2
    ttl: int = 20  # Patroni's least: the leader key outlives a dead primary by up to this
    loop_wait: int = 1
    retry_timeout: int = 8  # a starved machine must not make the primary step down
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="timebank-ha-")))
    members: list[Member] = field(default_factory=list)
    etcd: subprocess.Popen[bytes] | None = None
    etcd_port: int = 0

    def __enter__(self) -> PatroniCluster:
        try:
            self.start()
        except BaseException:
            print(self.logs())  # pytest shows it: why the cluster did not come up
            etcd_log = self.root / "etcd.log"
            if etcd_log.exists():
                print("--- etcd\n" + etcd_log.read_text(errors="replace")[-3000:])
            self.stop()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def url(self, dbname: str) -> str:
        hosts = "&".join(f"host=127.0.0.1:{m.pg_port}" for m in self.members)
        return f"postgresql+asyncpg://postgres@/{dbname}?{hosts}&target_session_attrs=read-write"

    def start(self) -> None:
        os.chmod(self.root, 0o755)  # noqa: S103 - the postgres user works in here
        self.etcd_port, peer = free_port(), free_port()
        etcd_dir = self.root / "etcd"
        self.etcd = subprocess.Popen(
            [
                ETCD,
                *("--name", "ha", "--data-dir", str(etcd_dir)),
                *("--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}"),
                *("--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}"),
                *("--listen-peer-urls", f"http://127.0.0.1:{peer}"),
                *("--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}"),
                *("--initial-cluster", f"ha=http://127.0.0.1:{peer}"),
            ],
            stdout=(self.root / "etcd.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for("etcd", lambda: self._etcd_healthy(), timeout=30)
        for i in range(self.size):
            member = Member(f"node{i + 1}", self.root / f"node{i + 1}", free_port(), free_port())
            member.root.mkdir()
            if _as_postgres():
                shutil.chown(member.root, "postgres", "postgres")
            self.members.append(member)
        # the first bootstraps alone (so it is the leader), the others clone it
        self._launch(self.members[0])
        wait_for("node1 to lead", lambda: self.members[0].status("/primary") == 200, 120)
        for member in self.members[1:]:
            self._launch(member)
        wait_for("a synchronous standby", lambda: self.sync_standby() is not None, 120)

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.etcd_port}/health", timeout=2
            ) as r:
                return bool(json.loads(r.read()).get("health") == "true")
        except OSError:
            return False

    def _config(self, m: Member) -> dict[str, Any]:
        pg_bin = find_pg_bin()
        assert pg_bin is not None
        trust = ["local all all trust", "host all all 127.0.0.1/32 trust"]
        trust += ["local replication all trust", "host replication all 127.0.0.1/32 trust"]
        return {
            "scope": "timebank",
            "name": m.name,
            "log": {"level": "INFO"},
            "restapi": {
                "listen": f"127.0.0.1:{m.api_port}",
                "connect_address": f"127.0.0.1:{m.api_port}",
            },
            "etcd3": {"hosts": [f"127.0.0.1:{self.etcd_port}"]},
            "bootstrap": {
                "dcs": {
                    "ttl": self.ttl,
                    "loop_wait": self.loop_wait,
                    "retry_timeout": self.retry_timeout,
                    "maximum_lag_on_failover": 1048576,
                    "synchronous_mode": True,
                    "postgresql": {
                        "use_pg_rewind": False,
                        "use_slots": True,
                        "parameters": {
                            "wal_level": "replica",
                            "hot_standby": "on",
                            "max_connections": 200,
                            "max_wal_senders": 10,
                            "max_replication_slots": 10,
                            "wal_keep_size": "256MB",
                            "synchronous_commit": "on",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, "no-sync"],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{m.pg_port}",
                "connect_address": f"127.0.0.1:{m.pg_port}",
                "data_dir": str(m.data),
                "bin_dir": str(pg_bin),
                "pgpass": str(m.root / "pgpass"),
                "pg_hba": trust,
                "authentication": {
                    "superuser": {"username": "postgres"},
                    "replication": {"username": "postgres"},
                },
                "parameters": {
                    "unix_socket_directories": str(m.root),
                    # only processes are killed here, never the machine
                    "fsync": "off",
                    "full_page_writes": "off",
                    "shared_buffers": "64MB",
                },
            },
        }

    def _launch(self, m: Member) -> None:
        config = m.root / "patroni.json"  # JSON is YAML
        config.write_text(json.dumps(self._config(m)))
        site = sysconfig.get_paths()["purelib"]
        if _as_postgres():
            shutil.chown(config, "postgres", "postgres")
            cmd = ["runuser", "-u", "postgres", "--", "env", f"PYTHONPATH={site}"]
            # -S: none of Debian's own dist-packages, only the virtualenv's (an old
            # python3-openssl there, pulled in by docker-compose, breaks the newer cryptography)
            cmd += [SYSTEM_PYTHON, "-S", "-m", "patroni", str(config)]
        else:
            cmd = [sys.executable, "-m", "patroni", str(config)]
        m.proc = subprocess.Popen(
            cmd,
            stdout=(m.root / "patroni.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=m.root,
        )

    def primary(self) -> Member | None:
        found = [m for m in self.members if m.status("/primary") == 200]
        return found[0] if len(found) == 1 else None

    def sync_standby(self) -> Member | None:
        found = [m for m in self.members if m.status("/sync") == 200]
        return found[0] if found else None

    def logs(self) -> str:
        return "\n".join(f"--- {m.name}\n{m.log()}" for m in self.members)

    @contextmanager
    def logs_on_failure(self) -> Iterator[None]:
        """Print the end of each Patroni's log if the block fails (pytest shows it)."""
        try:
            yield
        except BaseException:
            print(self.logs())
            raise

    def stop(self) -> None:
        for m in self.members:
            with suppress(Exception):
                m.kill9()
        if self.etcd is not None:
            with suppress(ProcessLookupError):
                os.killpg(self.etcd.pid, signal.SIGKILL)
            self.etcd.wait()
        # backends of a killed postmaster end by themselves; wait for their sockets to close
        for m in self.members:
            wait_for(f"{m.name} to be gone", lambda m=m: _gone(m), timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


def _gone(m: Member) -> bool:
    pid = m.postmaster_pid()
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
