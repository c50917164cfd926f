"""A throwaway, durable PostgreSQL cluster for the benchmark (fsync on, unix socket only).

Like tests/pg.py, but measuring a ledger that keeps its promises: ``fsync``,
``synchronous_commit`` and ``full_page_writes`` stay on. Run as the ``postgres`` user when
we are root. The caller must call :meth:`Cluster.stop` (``run.py`` does, in ``finally`` and
on signals).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _as_root() -> bool:
    return os.geteuid() == 0


def run_as_owner(
    cmd: list[str], check: bool = True, **kw: object
) -> subprocess.CompletedProcess[str]:
    if _as_root():
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, **kw)  # type: ignore[call-overload,no-any-return]


@dataclass
class Cluster:
    root: Path
    socket_dir: Path
    port: int
    user: str
    stopped: bool = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL for the product (asyncpg over the unix socket)."""
        return f"postgresql+asyncpg://{self.user}@/{dbname}?host={self.socket_dir}&port={self.port}"

    def conn_args(self) -> list[str]:
        return ["-h", str(self.socket_dir), "-p", str(self.port), "-U", self.user]

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        out = subprocess.run(
            [
                str(PG_BIN / "psql"),
                *self.conn_args(),
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
        )
        return out.stdout.strip()

    def createdb(self, name: str) -> None:
        self.psql(f'CREATE DATABASE "{name}"')

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def version(self) -> str:
        return self.psql("SHOW server_version")

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        run_as_owner(
            [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-t", "60", "stop"],
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start(shared_buffers: str = "256MB", max_connections: int = 200) -> Cluster:
    """initdb into a temp dir and start a durable cluster listening on a unix socket only."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(f"PostgreSQL binaries not found in {PG_BIN} (set BENCH_PG_BIN)")
    root = Path(tempfile.mkdtemp(prefix="timebank-bench-pg-"))
    socket_dir = root / "sock"
    socket_dir.mkdir()
    user = "postgres" if _as_root() else os.environ.get("USER", "postgres")
    if _as_root():
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(socket_dir, "postgres", "postgres")
        os.chmod(root, 0o755)  # noqa: S103 - clients must reach the socket
    run_as_owner(
        [
            str(PG_BIN / "initdb"),
            "-D",
            str(root / "data"),
            "-U",
            user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]
    )
    port = 25432 + (os.getpid() % 1000)
    opts = " ".join(
        [
            "-c listen_addresses=''",
            f"-c unix_socket_directories={socket_dir}",
            f"-c port={port}",
            # Durable: a 2xx from the ledger must survive a crash (SPEC §2.6).
            "-c fsync=on",
            "-c synchronous_commit=on",
            "-c full_page_writes=on",
            f"-c max_connections={max_connections}",
            f"-c shared_buffers={shared_buffers}",
            # Bulk generation would otherwise checkpoint every few seconds.
            "-c max_wal_size=4GB",
            "-c checkpoint_timeout=15min",
        ]
    )
    cluster = Cluster(root, socket_dir, port, user)
    try:
        run_as_owner(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(root / "data"),
                "-o",
                opts,
                "-l",
                str(root / "log"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        for _ in range(100):
            try:
                cluster.psql("SELECT 1")
                break
            except subprocess.CalledProcessError:
                time.sleep(0.1)
    except BaseException:
        cluster.stop()
        raise
    return cluster
