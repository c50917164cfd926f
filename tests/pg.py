"""A throwaway PostgreSQL 15 cluster for the test suite (unix socket in a temp dir)."""

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

    def url(self, dbname: str) -> str:
        return f"postgresql+asyncpg://{self.user}@/{dbname}?host={self.socket_dir}&port={self.port}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        out = subprocess.run(
            [
                str(self.bin / "psql"),
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                self.user,
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

    def stop(self) -> None:
        _run_as_owner(
            [str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop"],
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def _as_postgres() -> bool:
    return os.geteuid() == 0


def _run_as_owner(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    if _as_postgres():
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def start_cluster(fsync: bool = False) -> Cluster:
    pg_bin = find_pg_bin()
    if pg_bin is None:
        raise RuntimeError("PostgreSQL binaries not found (looked in /usr/lib/postgresql/*/bin)")
    root = Path(tempfile.mkdtemp(prefix="timebank-pg-"))
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
    port = 15432 + (os.getpid() % 1000)
    opts = (
        f"-c listen_addresses='' -c unix_socket_directories={socket_dir} -c port={port} "
        f"-c fsync={'on' if fsync else 'off'} -c synchronous_commit={'on' if fsync else 'off'} "
        "-c full_page_writes=off -c max_connections=300 -c shared_buffers=128MB"
    )
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
    cluster = Cluster(pg_bin, root, socket_dir, port, user)
    for _ in range(100):
        try:
            cluster.psql("SELECT 1")
            break
        except subprocess.CalledProcessError:
            time.sleep(0.1)
    return cluster
