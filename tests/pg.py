"""A throwaway PostgreSQL 15 cluster (unix socket in a temp dir) for the test suite, and —
durable, with settings of its own — for the benchmark (benchmarks/pgcluster.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PG_BIN_CANDIDATES = [
    os.environ.get("TIMEBANK_PG_BIN", ""),
    "/usr/lib/postgresql/15/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/17/bin",
]


def find_pg_bin() -> Path | None:
    for cand in PG_BIN_CANDIDATES:
        if cand and (Path(cand) / "initdb").exists() and (Path(cand) / "pg_ctl").exists():
            return Path(cand)
    return None


@dataclass
class Cluster:
    bin: Path
    root: Path
    socket_dir: Path
    port: int
    user: str = "postgres"
    stop_mode: str = "immediate"
    stopped: bool = False

    def url(self, dbname: str) -> str:
        return f"postgresql+asyncpg://{self.user}@/{dbname}?host={self.socket_dir}&port={self.port}"

    def conn_args(self) -> list[str]:
        return ["-h", str(self.socket_dir), "-p", str(self.port), "-U", self.user]

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        out = subprocess.run(
            [
                str(self.bin / "psql"),
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
        return out.stdout

    def createdb(self, name: str) -> None:
        self.psql(f'CREATE DATABASE "{name}"')

    def version(self) -> str:
        return self.psql("SHOW server_version").strip()

    def postmaster_pid(self) -> int:
        return int((self.root / "data" / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        _run_as_owner(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.root / "data"),
                "-m",
                self.stop_mode,
                "-t",
                "60",
                "stop",
            ],
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def _as_postgres() -> bool:
    return os.geteuid() == 0


def _run_as_owner(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    if _as_postgres():
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def start_cluster(
    fsync: bool = False,
    *,
    bin: Path | None = None,
    prefix: str = "timebank-pg-",
    port_base: int = 15432,
    settings: dict[str, str] | None = None,
    stop_mode: str = "immediate",
    port: int | None = None,
) -> Cluster:
    """initdb into a temp dir and start a cluster on a unix socket only. ``fsync`` makes it
    durable (fsync, synchronous_commit and full_page_writes on); ``settings`` add to or
    override the server settings."""
    pg_bin = bin or find_pg_bin()
    if pg_bin is None or not (pg_bin / "initdb").exists():
        raise RuntimeError("PostgreSQL binaries not found (looked in /usr/lib/postgresql/*/bin)")
    root = Path(tempfile.mkdtemp(prefix=prefix))
    socket_dir = root / "sock"
    socket_dir.mkdir()
    if _as_postgres():
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(socket_dir, "postgres", "postgres")
        os.chmod(root, 0o755)  # noqa: S103 - the postgres user must reach its socket
    user = "postgres" if _as_postgres() else os.environ.get("USER", "postgres")
    _run_as_owner(
        [
            str(pg_bin / "initdb"),
            "-D",
            str(root / "data"),
            "-U",
            user,
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]
    )
    port = port or port_base + (os.getpid() % 1000)
    durable = "on" if fsync else "off"
    server = {
        "listen_addresses": "''",
        "unix_socket_directories": str(socket_dir),
        "port": str(port),
        "fsync": durable,
        "synchronous_commit": durable,
        "full_page_writes": durable,
        "max_connections": "300",
        "shared_buffers": "128MB",
        **(settings or {}),
    }
    opts = " ".join(f"-c {name}={value}" for name, value in server.items())
    cluster = Cluster(pg_bin, root, socket_dir, port, user, stop_mode)
    try:
        _run_as_owner(
            [
                str(pg_bin / "pg_ctl"),
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
