"""`make bench`: the SPEC §6 benchmark, end to end, each figure beside an anchor measured in
the same run on the same machine.

Phases: a durable PostgreSQL 15 cluster of our own (fsync on) → pgbench init → the 1 M
dataset (``timebank demo generate``) → a 10 k-member bank for writes → the django-hordak
anchor → interleaved write rounds (pgbench, uniform POST, hordak, hot organisation) →
GET balance vs a bare Litestar handler (interleaved) → reports → batch import → the same on
SQLite (labelled) → table + ``benchmarks/results/latest.json``. Every server and the cluster
are stopped at the end, whatever happens.

Configuration: environment variables, see ``Config`` and benchmarks/README.md. Only the
standard library is used here; the product runs from ``.venv``, hordak from its own venv.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import console
import pgcluster

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
LOGS = RESULTS / "logs"
WRK_DIR = BENCH / "wrk"
PRODUCT_BIN = ROOT / ".venv" / "bin"
HORDAK_DIR = BENCH / "hordak"
HORDAK_VENV = BENCH / ".venv-hordak"

DATA_BANK = "bench-data"
WRITES_BANK = "bench-writes"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw.replace("_", "")) if raw else default


@dataclass
class Config:
    """All knobs, from ``BENCH_*`` environment variables (``BENCH_QUICK=1``: small and short)."""

    quick: bool
    members: int
    exchanges: int
    sqlite_members: int
    sqlite_exchanges: int
    accounts: int
    clients: int
    threads: int
    workers: int
    duration: int
    warmup: int
    repeats: int
    batch_exchanges: int
    report_calls: int
    sqlite_report_calls: int
    report_max_seconds: int
    batch_max_seconds: int
    pgbench_scale: int
    seed: int
    skip: set[str]

    @classmethod
    def from_env(cls) -> Config:
        quick = os.environ.get("BENCH_QUICK", "") not in ("", "0", "false", "no")
        members = _env_int("BENCH_MEMBERS", 2_000 if quick else 20_000)
        exchanges = _env_int("BENCH_EXCHANGES", 20_000 if quick else 1_000_000)
        clients = _env_int("BENCH_CLIENTS", 16)
        return cls(
            quick=quick,
            members=members,
            exchanges=exchanges,
            sqlite_members=_env_int("BENCH_SQLITE_MEMBERS", members),
            sqlite_exchanges=_env_int("BENCH_SQLITE_EXCHANGES", exchanges),
            accounts=_env_int("BENCH_ACCOUNTS", 2_000 if quick else 10_000),
            clients=clients,
            threads=_env_int("BENCH_LOADGEN_THREADS", 1),
            workers=_env_int("BENCH_WORKERS", 2),
            duration=_env_int("BENCH_DURATION", 3 if quick else 10),
            warmup=_env_int("BENCH_WARMUP", 2 if quick else 3),
            repeats=_env_int("BENCH_REPEATS", 3),
            batch_exchanges=_env_int("BENCH_BATCH_EXCHANGES", 10_000 if quick else 100_000),
            report_calls=_env_int("BENCH_REPORT_CALLS", 5),
            sqlite_report_calls=_env_int("BENCH_SQLITE_REPORT_CALLS", 3),
            report_max_seconds=_env_int("BENCH_REPORT_MAX_SECONDS", 20 if quick else 40),
            batch_max_seconds=_env_int("BENCH_BATCH_MAX_SECONDS", 15 if quick else 90),
            pgbench_scale=_env_int("BENCH_PGBENCH_SCALE", clients),
            seed=_env_int("BENCH_SEED", 1),
            skip={s.strip() for s in os.environ.get("BENCH_SKIP", "").split(",") if s.strip()},
        )


# --- small utilities ---------------------------------------------------------------------

T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", flush=True)


@dataclass
class Phase:
    name: str
    seconds: float


PHASES: list[Phase] = []


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    say(f"▶ {name}")
    t = time.monotonic()
    try:
        yield
    finally:
        took = time.monotonic() - t
        PHASES.append(Phase(name, round(took, 1)))
        say(f"  {name}: {took:.1f}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies over all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [float(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


# --- processes we start (and always stop) ------------------------------------------------


class Procs:
    """Every long-lived process we start, each in its own session, so it can be stopped with
    its workers by process group id; ``stop_all`` runs in ``finally`` and on SIGTERM/SIGINT."""

    def __init__(self) -> None:
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        log = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.running[name] = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def stop(self, name: str) -> None:
        p = self.running.pop(name, None)
        if p is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


PROCS = Procs()


def wait_http(url: str, proc_name: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    parsed = urllib.parse.urlsplit(url)
    while time.monotonic() < deadline:
        p = PROCS.running.get(proc_name)
        if p is not None and p.poll() is not None:
            raise RuntimeError(f"{proc_name} exited ({p.returncode}); see {LOGS / proc_name}.log")
        try:
            c = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=2)
            c.request("GET", parsed.path)
            if c.getresponse().status < 500:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{proc_name} did not answer {url} within {timeout:.0f}s")


TICK = os.sysconf("SC_CLK_TCK")


def _proc_stats() -> Iterator[tuple[int, int, int, float, float]]:
    """(pid, ppid, pgid, own CPU s, reaped children's CPU s) of every process."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        x = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
        yield (
            int(entry.name),
            int(x[1]),
            int(x[2]),
            (int(x[11]) + int(x[12])) / TICK,
            (int(x[13]) + int(x[14])) / TICK,
        )


@dataclass
class CpuProbe:
    """CPU seconds used so far by one server's process group (``app``) and by the
    PostgreSQL cluster (``db``: the postmaster, its live children, and the children it
    has reaped, so short-lived pgbench backends are counted)."""

    server: str | None = None
    postmaster: int | None = None

    def snapshot(self) -> tuple[float, float]:
        proc = PROCS.running.get(self.server) if self.server else None
        pgid = proc.pid if proc else None
        app = db = 0.0
        for pid, ppid, pg, own, reaped in _proc_stats():
            if pgid is not None and pg == pgid:
                app += own + reaped
            if self.postmaster is not None:
                if pid == self.postmaster:
                    db += own + reaped
                elif ppid == self.postmaster:
                    db += own
        return app, db


# --- HTTP client for setup and sequential measurements -----------------------------------


class Api:
    """A keep-alive JSON client (one connection per thread)."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.port = port
        self.token = token
        self.local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
            self.local.conn = c
        return c

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any, bytes]:
        headers = {"Content-Type": "application/json"}
        tok = token or self.token
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(2):
            c = self._conn()
            try:
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                raw = r.read()
                break
            except (http.client.HTTPException, OSError):
                c.close()
                self.local.conn = None
                if attempt:
                    raise
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return r.status, parsed, raw

    def upload(self, path: str, data: bytes, content_type: str, token: str) -> Any:
        """POST a file as the body (a time sheet)."""
        c = self._conn()
        headers = {"Content-Type": content_type, "Authorization": f"Bearer {token}"}
        c.request("POST", path, body=data, headers=headers)
        r = c.getresponse()
        raw = r.read()
        if r.status >= 300:
            raise RuntimeError(f"POST {path} → {r.status}: {raw[:500]!r}")
        return json.loads(raw)

    def ok(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        status, parsed, raw = self.call(method, path, body, token)
        if status >= 300:
            raise RuntimeError(f"{method} {path} → {status}: {raw[:500]!r}")
        return parsed


# --- load generators -----------------------------------------------------------------------


@dataclass
class Run:
    """One measured run of a load generator."""

    value: float  # successful operations per second
    p50_ms: float | None = None
    p99_ms: float | None = None
    loadgen_cpu_pct: float = 0.0  # of one core
    machine_busy_pct: float = 0.0  # all cores
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    refused_pct: float | None = None
    app_cpu_ms: float | None = None  # server CPU per successful operation
    db_cpu_ms: float | None = None  # PostgreSQL CPU per successful operation


def run_wrk(
    cfg: Config,
    url: str,
    script: str,
    env_extra: dict[str, str],
    duration: int,
    probe: CpuProbe | None = None,
) -> Run:
    env = {**os.environ, "BENCH_WRK_DIR": str(WRK_DIR), "BENCH_SEED": str(cfg.seed), **env_extra}
    cmd = [
        "wrk",
        "-t",
        str(cfg.threads),
        "-c",
        str(cfg.clients),
        "-d",
        f"{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_DIR / script),
        url,
    ]
    probe = probe or CpuProbe()
    with tempfile.TemporaryFile() as out:
        busy0, total0 = cpu_times()
        app0, db0 = probe.snapshot()
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        app1, db1 = probe.snapshot()
        busy1, total1 = cpu_times()
        out.seek(0)
        text = out.read().decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("BENCHJSON ")), None)
    if p.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({p.returncode}):\n{text[-2000:]}")
    res = json.loads(line.removeprefix("BENCHJSON "))
    secs = res["duration_us"] / 1e6
    statuses = {str(k): int(v) for k, v in res["statuses"].items()}
    errors = {k: int(v) for k, v in res["errors"].items() if v}
    if statuses:  # the script counted statuses: only 2xx count as throughput
        ok = sum(v for k, v in statuses.items() if k.startswith("2"))
        refused = sum(v for k, v in statuses.items() if k == "409")
        answered = sum(statuses.values())
        refused_pct: float | None = 100.0 * refused / answered if answered else None
    else:
        ok = res["requests"] - res["errors"]["status"]
        refused_pct = None
    return Run(
        value=ok / secs,
        p50_ms=res["latency_us"]["p50"] / 1000,
        p99_ms=res["latency_us"]["p99"] / 1000,
        loadgen_cpu_pct=100.0 * (ru.ru_utime + ru.ru_stime) / secs,
        machine_busy_pct=100.0 * (busy1 - busy0) / max(total1 - total0, 1),
        statuses=statuses,
        errors=errors,
        refused_pct=refused_pct,
        app_cpu_ms=1000 * (app1 - app0) / ok if ok and probe.server else None,
        db_cpu_ms=1000 * (db1 - db0) / ok if ok and probe.postmaster else None,
    )


def run_pgbench(cfg: Config, cluster: pgcluster.Cluster, duration: int) -> Run:
    cmd = [
        str(pgcluster.PG_BIN / "pgbench"),
        *cluster.conn_args(),
        "-c",
        str(cfg.clients),
        "-j",
        str(cfg.threads),
        "-T",
        str(duration),
        "-M",
        "prepared",
        "-b",
        "tpcb-like",
        "pgbench",
    ]
    probe = CpuProbe(postmaster=cluster.postmaster_pid())
    with tempfile.TemporaryFile() as out:
        busy0, total0 = cpu_times()
        _, db0 = probe.snapshot()
        t = time.monotonic()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t
        _, db1 = probe.snapshot()
        busy1, total1 = cpu_times()
        out.seek(0)
        text = out.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"pgbench failed:\n{text[-2000:]}")
    tps = next(float(ln.split()[2]) for ln in text.splitlines() if ln.startswith("tps = "))
    lat = next(
        (
            float(ln.split("=")[1].split()[0])
            for ln in text.splitlines()
            if ln.startswith("latency average")
        ),
        None,
    )
    return Run(
        value=tps,
        p50_ms=lat,  # pgbench prints the mean, not the median
        loadgen_cpu_pct=100.0 * (ru.ru_utime + ru.ru_stime) / max(wall, duration),
        machine_busy_pct=100.0 * (busy1 - busy0) / max(total1 - total0, 1),
        db_cpu_ms=1000 * (db1 - db0) / (tps * duration) if tps else None,
    )


# --- the product: serve, keys, banks -------------------------------------------------------


def product_env(db_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "TIMEBANK_DATABASE_URL": db_url,
        "TIMEBANK_RATE_LIMIT_PER_MINUTE": "0",
        "TIMEBANK_LOG_LEVEL": "WARNING",
    }


def timebank_cli(db_url: str, *args: str, timeout: float | None = None) -> str:
    r = subprocess.run(
        [str(PRODUCT_BIN / "timebank"), *args],
        env=product_env(db_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if r.returncode != 0:
        raise RuntimeError(f"timebank {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return r.stdout.strip()


def serve_product(name: str, db_url: str, workers: int) -> int:
    port = free_port()
    PROCS.start(
        name,
        [
            str(PRODUCT_BIN / "timebank"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        product_env(db_url),
        ROOT,
    )
    wait_http(f"http://127.0.0.1:{port}/health", name)
    return port


@dataclass
class Bank:
    slug: str
    broker: str
    member_ids: list[str]
    org_id: str | None = None


def broker_key(api: Api, admin: str, slug: str) -> str:
    out = api.ok(
        "POST",
        f"/v1/timebanks/{slug}/api-keys",
        {"role": "broker", "label": "benchmark"},
        token=admin,
    )
    return str(out["secret"])


def list_ids(api: Api, path: str, token: str) -> list[str]:
    """Ids of the active members or organisations at ``path``, in id (creation) order."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        q = "limit=500" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        page = api.ok("GET", f"{path}?{q}", token=token)
        ids += [m["id"] for m in page["items"] if m.get("status") == "active"]
        cursor = page.get("next_cursor")
        if not cursor:
            return ids


def generate(cfg: Config, db_url: str, slug: str, members: int, exchanges: int) -> float:
    """``timebank demo generate`` (the product's own bulk writer); returns seconds. Each bank
    gets its own seed: the generator derives row ids from it, so two banks generated with
    one seed in one database collide."""
    seed = cfg.seed + (0 if slug == DATA_BANK else 7919)
    cmd = [
        str(PRODUCT_BIN / "timebank"),
        "demo",
        "generate",
        "--timebank",
        slug,
        "--members",
        str(members),
        "--exchanges",
        str(exchanges),
        "--seed",
        str(seed),
    ]
    LOGS.mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    with open(LOGS / "generate.log", "ab") as log:
        log.write(f"$ {' '.join(cmd[1:])}  ({db_url.split(':')[0]})\n".encode())
        log.flush()
        env = {**product_env(db_url), "COLUMNS": "100", "TERM": "dumb"}
        r = subprocess.run(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError(f"timebank demo generate failed; see {LOGS / 'generate.log'}")
    return time.monotonic() - t


def writes_bank_size(cfg: Config) -> int:
    """Members to generate so that at least ``cfg.accounts`` are active (a few are drawn as
    suspended)."""
    return cfg.accounts * 11 // 10 + 20


def data_bank(api: Api, admin: str) -> Bank:
    broker = broker_key(api, admin, DATA_BANK)
    return Bank(DATA_BANK, broker, list_ids(api, f"/v1/timebanks/{DATA_BANK}/members", broker))


def writes_bank(api: Api, admin: str, n: int) -> Bank:
    """``n`` active members of a bank generated with no exchanges yet (balances 0, default
    limits: min −600) and one of its organisations, unbounded, for the hot workload."""
    broker = broker_key(api, admin, WRITES_BANK)
    base = f"/v1/timebanks/{WRITES_BANK}"
    ids = list_ids(api, f"{base}/members", broker)
    if len(ids) < n:
        raise RuntimeError(f"only {len(ids)} active members in {WRITES_BANK}, wanted {n}")
    org = api.ok("GET", f"{base}/organisations?limit=1", token=broker)["items"][0]
    account = api.ok("GET", f"{base}/accounts/{org['account_id']}", token=broker)
    if account["min_balance_minutes"] is not None or account["max_balance_minutes"] is not None:
        api.ok(
            "PATCH",
            f"{base}/accounts/{org['account_id']}",
            {"min_balance_minutes": None, "max_balance_minutes": None},
            token=broker,
        )
    return Bank(WRITES_BANK, broker, ids[:n], str(org["id"]))


def write_ids(name: str, ids: list[Any]) -> Path:
    path = RESULTS / "work" / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(str(i) for i in ids) + "\n")
    return path


# --- workloads ---------------------------------------------------------------------------


def post_env(
    mode: str, path: str, ids: Path, token: str = "", org: str = "", idem: bool = False
) -> dict[str, str]:
    return {
        "BENCH_MODE": mode,
        "BENCH_PATH": path,
        "BENCH_IDS": str(ids),
        "BENCH_TOKEN": token,
        "BENCH_ORG": org,
        "BENCH_IDEMPOTENCY": "1" if idem else "0",
    }


def time_reports(
    api: Api, slug: str, token: str, names: list[str], calls: int, max_seconds: float
) -> dict[str, dict[str, Any]]:
    """Per report: one warm-up call, then ``calls`` timed calls (fewer if they pass
    ``max_seconds``; at least one)."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        path = f"/v1/timebanks/{slug}/reports/{name}"
        status, _, raw = api.call("GET", path, token=token)  # warm-up, not counted
        if status != 200:
            raise RuntimeError(f"report {name} → {status}: {raw[:300]!r}")
        times: list[float] = []
        began = time.perf_counter()
        for _ in range(calls):
            if times and time.perf_counter() - began > max_seconds:
                break
            t = time.perf_counter()
            status, _, raw = api.call("GET", path, token=token)
            times.append((time.perf_counter() - t) * 1000)
            if status != 200:
                raise RuntimeError(f"report {name} → {status}: {raw[:300]!r}")
        out[name] = {
            "p50_ms": median(times),
            "min_ms": min(times),
            "max_ms": max(times),
            "calls": len(times),
            "bytes": len(raw),
        }
        say(
            f"  report {name}: p50 {median(times):.0f} ms (min {min(times):.0f}, "
            f"max {max(times):.0f})"
        )
    return out


def generate_banks(
    cfg: Config, url: str, engine: str, members: int, exchanges: int
) -> dict[str, Any]:
    """The reports dataset and the (exchange-free) writes bank; the dataset's timing."""
    with phase(f"generate {engine} dataset: {exchanges:,} exchanges / {members:,} members"):
        secs = generate(cfg, url, DATA_BANK, members, exchanges)
    with phase(f"generate {engine} writes bank: {cfg.accounts:,} members, no exchanges"):
        generate(cfg, url, WRITES_BANK, writes_bank_size(cfg), 0)
    return {
        "seconds": round(secs, 1),
        "exchanges": exchanges,
        "members": members,
        "exchanges_per_s": round(exchanges / secs),
    }


def batch_import(
    api: Api, bank: Bank, total: int, seed: int, tag: str, max_seconds: float
) -> dict[str, Any]:
    """``total`` p2p exchanges in batches of 1000 (``atomic: false``), one client, in order,
    as an import script would send them; bodies are built before the clock starts. Stops
    after ``max_seconds`` (keeps the whole run bounded) and then projects the total."""
    rng = random.Random(seed)
    cats = ["transport", "companionship", "shopping-errands", "home-garden", "admin-it"]
    bodies = []
    for start in range(0, total, 1000):
        items = []
        for i in range(start, min(start + 1000, total)):
            a, b = rng.sample(bank.member_ids, 2)
            items.append(
                {
                    "provider": {"member_id": a},
                    "recipient": {"member_id": b},
                    "minutes": 15 * rng.randint(1, 4),
                    "category": rng.choice(cats),
                    "external_ref": f"{tag}-{i}",
                }
            )
        bodies.append({"exchanges": items, "atomic": False})
    counts: dict[str, int] = {}
    per_batch = []
    t = time.perf_counter()
    done = 0
    for body in bodies:
        if time.perf_counter() - t > max_seconds:
            break
        tb = time.perf_counter()
        out = api.ok("POST", f"/v1/timebanks/{bank.slug}/exchanges/batch", body, token=bank.broker)
        per_batch.append(time.perf_counter() - tb)
        for r in out["results"]:
            counts[str(r["status"])] = counts.get(str(r["status"]), 0) + 1
        done += len(body["exchanges"])
    secs = time.perf_counter() - t
    return {
        "seconds": secs * total / done,
        "measured_seconds": secs,
        "sent": done,
        "complete": done == total,
        "statuses": counts,
        "batches": len(per_batch),
        "batch_p50_ms": median(per_batch) * 1000,
        "batch_max_ms": max(per_batch) * 1000,
    }


def sheet_import(api: Api, bank: Bank, lines: int, seed: int, tag: str) -> dict[str, Any]:
    """A paper time sheet of ``lines`` lines naming members by display name (the unique
    ones), uploaded (the preview: read, resolve, judge every line) and then committed."""
    names: dict[str, str] = {}
    seen: dict[str, int] = {}
    cursor = ""
    while True:
        page = api.ok(
            "GET", f"/v1/timebanks/{bank.slug}/directory?limit=500{cursor}", token=bank.broker
        )
        for entry in page["items"]:
            if entry["type"] == "member":
                seen[entry["display_name"]] = seen.get(entry["display_name"], 0) + 1
                names[entry["display_name"]] = entry["id"]
        if not page["next_cursor"]:
            break
        cursor = f"&cursor={page['next_cursor']}"
    unique = sorted(n for n, k in seen.items() if k == 1)
    rng = random.Random(seed)
    rows = ["Date,Giver,Receiver,Hours,Category"]
    for i in range(lines):
        a, b = rng.sample(unique, 2)
        day = 1 + i % 28
        rows.append(
            f"{day:02d}/11/2026,{a},{b},{rng.choice(['0:30', '1', '1.5', '45m'])},Transport"
        )
    sheet = ("\n".join(rows) + "\n").encode()
    t = time.perf_counter()
    preview = api.upload(
        f"/v1/timebanks/{bank.slug}/imports?sheet={tag}", sheet, "text/csv", bank.broker
    )
    preview_s = time.perf_counter() - t
    t = time.perf_counter()
    done = api.ok(
        "POST", f"/v1/timebanks/{bank.slug}/imports/{preview['id']}/commit", {}, token=bank.broker
    )
    commit_s = time.perf_counter() - t
    return {
        "lines": lines,
        "preview_seconds": preview_s,
        "commit_seconds": commit_s,
        "preview_summary": preview["summary"],
        "commit_summary": done["summary"],
    }


def sheet_rows(s: dict[str, Any], engine: str) -> list[Row]:
    note = f"preview {s['preview_summary']}; commit {s['commit_summary']}"
    return [
        Row(
            f"import preview of a {s['lines']:,}-line sheet ({engine})",
            s["preview_seconds"],
            "s",
            None,
            None,
            "< 2 s",
            s["preview_seconds"] < 2,
            note,
            s,
        ),
        Row(
            f"import commit of a {s['lines']:,}-line sheet ({engine})",
            s["commit_seconds"],
            "s",
            None,
            None,
            "< 2 s",
            s["commit_seconds"] < 2,
            "",
            s,
        ),
    ]


def batch_row(cfg: Config, engine: str, b: dict[str, Any], target: str | None) -> Row:
    full = cfg.batch_exchanges >= 100_000
    note = f"{b['sent'] / b['measured_seconds']:,.0f} exchanges/s; statuses {b['statuses']}; "
    note += f"per batch of 1000 p50 {b['batch_p50_ms']:.0f} ms"
    if not b["complete"]:
        note += (
            f"; PROJECTED: stopped after {b['measured_seconds']:.0f} s "
            f"(BENCH_BATCH_MAX_SECONDS) with {b['sent']:,} sent"
        )
    return Row(
        f"batch import {cfg.batch_exchanges:,} exchanges ({engine})",
        b["seconds"],
        "s",
        None,
        None,
        target if full else None,
        (b["seconds"] < 20) if full and target else None,
        note,
        b,
    )


# --- results -------------------------------------------------------------------------------


@dataclass
class Row:
    workload: str
    value: float | None
    unit: str
    anchor: str | None = None
    anchor_value: float | None = None
    target: str | None = None
    met: bool | None = None
    notes: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.anchor_value:
            return None
        return self.value / self.anchor_value


def summarise(runs: list[Run]) -> dict[str, Any]:
    def med(attr: str) -> float | None:
        xs = [getattr(r, attr) for r in runs if getattr(r, attr) is not None]
        return round(median(xs), 2) if xs else None

    return {
        "median": med("value"),
        "p50_ms": med("p50_ms"),
        "p99_ms": med("p99_ms"),
        "loadgen_cpu_pct": med("loadgen_cpu_pct"),
        "machine_busy_pct": med("machine_busy_pct"),
        "refused_pct": med("refused_pct"),
        "app_cpu_ms": med("app_cpu_ms"),
        "db_cpu_ms": med("db_cpu_ms"),
        "runs": [r.__dict__ for r in runs],
    }


def fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "—"
    if abs(x) >= 100:
        s = f"{x:,.0f}"
    elif abs(x) >= 10:
        s = f"{x:.1f}"
    else:
        s = f"{x:.2f}"
    return f"{s} {unit}".strip()


def print_table(rows: list[Row]) -> None:
    head = ["workload", "value", "anchor", "ratio", "target", "met"]
    table = [head]
    for r in rows:
        anchor = f"{r.anchor} {fmt(r.anchor_value, r.unit)}" if r.anchor else "—"
        met = "—" if r.met is None else ("yes" if r.met else "NO")
        table.append(
            [
                r.workload,
                fmt(r.value, r.unit),
                anchor,
                "—" if r.ratio is None else f"{r.ratio:.2f}×",
                r.target or "—",
                met,
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    print()
    for i, row in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if i == 0:
            print(line)
    print()
    for r in rows:
        if r.notes:
            print(f"  {r.workload}: {r.notes}")
    print()


def machine_facts(pg_version: str | None) -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for ln in f:
            if ln.startswith("model name"):
                model = ln.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for ln in f:
            if ln.startswith("MemTotal"):
                mem_kb = int(ln.split()[1])
    py = subprocess.run(
        [str(PRODUCT_BIN / "python"), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": py,
        "postgresql": pg_version,
        "wrk": (wrk_v.stdout + wrk_v.stderr).split("\n")[0].strip(),
        "loadavg_at_end": os.getloadavg(),
    }


def git_sha() -> str:
    r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return r.stdout.strip() + ("-dirty" if dirty else "")


# --- setup of tools ------------------------------------------------------------------------


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    say("installing wrk (apt-get)")
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)


def ensure_hordak_venv() -> Path:
    py = HORDAK_VENV / "bin" / "python"
    req = HORDAK_DIR / "requirements.txt"
    stamp = HORDAK_VENV / ".requirements"
    if py.exists() and stamp.exists() and stamp.read_text() == req.read_text():
        return py
    say("creating benchmarks/.venv-hordak (Django + django-hordak)")
    uv = shutil.which("uv")
    if uv:
        subprocess.run(
            [uv, "venv", "-q", "--clear", "--python", sys.executable, str(HORDAK_VENV)],
            check=True,
            env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
        )
        subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(py), "-r", str(req)], check=True
        )
    else:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(HORDAK_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "-r", str(req)], check=True)
    stamp.write_text(req.read_text())
    return py


# --- the run -------------------------------------------------------------------------------


def main() -> int:
    cfg = Config.from_env()
    started = dt.datetime.now(dt.UTC)
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(LOGS, ignore_errors=True)
    shutil.rmtree(RESULTS / "work", ignore_errors=True)
    say(
        f"benchmark ({'QUICK' if cfg.quick else 'full'}): {cfg.exchanges:,} exchanges / "
        f"{cfg.members:,} members; {cfg.accounts:,} write accounts; {cfg.clients} clients; "
        f"{cfg.workers} workers; {cfg.repeats}×{cfg.duration}s runs"
    )

    rows: list[Row] = []
    facts: dict[str, Any] = {"loadavg_at_start": os.getloadavg(), "git_sha": git_sha()}
    cluster: pgcluster.Cluster | None = None
    sqlite_dir: Path | None = None

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    completed = False
    try:
        with phase("tools: wrk, hordak virtualenv"):
            ensure_wrk()
            hordak_py = ensure_hordak_venv() if "hordak" not in cfg.skip else None
        with phase("PostgreSQL 15 cluster (fsync on)"):
            cluster = pgcluster.start()
            facts["pg_version"] = cluster.version()
            for db in ("timebank", "pgbench", "hordak"):
                cluster.createdb(db)
        pg_url = cluster.url("timebank")

        with phase(f"pgbench -i -s {cfg.pgbench_scale}"):
            subprocess.run(
                [
                    str(pgcluster.PG_BIN / "pgbench"),
                    *cluster.conn_args(),
                    "-i",
                    "-q",
                    "-s",
                    str(cfg.pgbench_scale),
                    "pgbench",
                ],
                check=True,
                capture_output=True,
            )

        with phase("migrate + admin key"):
            timebank_cli(pg_url, "db", "upgrade")
            admin = timebank_cli(pg_url, "keys", "create", "--role", "admin", "--label", "bench")

        facts["generate_pg"] = generate_banks(cfg, pg_url, "PostgreSQL", cfg.members, cfg.exchanges)
        with phase("settle: VACUUM ANALYZE, CHECKPOINT"):
            # Without this the first write round competes with autovacuum of the freshly
            # loaded tables and the checkpoint flushing them (seen: 10/s instead of ~300/s).
            cluster.psql("VACUUM (ANALYZE)", "timebank")
            cluster.psql("CHECKPOINT")

        with phase("serve (PostgreSQL), keys, id lists"):
            port = serve_product("timebank-pg", pg_url, cfg.workers)
            api = Api(port)
            wbank = writes_bank(api, admin, cfg.accounts)
            dbank = data_bank(api, admin)
            writes_ids = write_ids("writes-members", wbank.member_ids)
            data_ids = write_ids("data-members", dbank.member_ids)

        hordak_port = None
        if hordak_py is not None:
            with phase(f"django-hordak: migrate, {cfg.accounts:,} accounts, serve"):
                henv = {
                    **os.environ,
                    "BENCH_PG_HOST": str(cluster.socket_dir),
                    "BENCH_PG_PORT": str(cluster.port),
                    "BENCH_PG_USER": cluster.user,
                    "BENCH_PG_DB": "hordak",
                    "PYTHONDONTWRITEBYTECODE": "1",
                }
                subprocess.run(
                    [str(hordak_py), "manage.py", "migrate", "-v0"],
                    cwd=HORDAK_DIR,
                    env=henv,
                    check=True,
                    capture_output=True,
                )
                hordak_ids = RESULTS / "work" / "hordak-accounts.txt"
                subprocess.run(
                    [
                        str(hordak_py),
                        "manage.py",
                        "bench_accounts",
                        str(cfg.accounts),
                        str(hordak_ids),
                    ],
                    cwd=HORDAK_DIR,
                    env=henv,
                    check=True,
                    capture_output=True,
                )
                hordak_port = free_port()
                PROCS.start(
                    "hordak",
                    [
                        str(hordak_py),
                        str(BENCH / "serve.py"),
                        "hordak_bench.asgi:create_app",
                        "--port",
                        str(hordak_port),
                        "--workers",
                        str(cfg.workers),
                        "--app-dir",
                        str(HORDAK_DIR),
                    ],
                    henv,
                    HORDAK_DIR,
                )
                wait_http(f"http://127.0.0.1:{hordak_port}/health", "hordak")

        base = f"http://127.0.0.1:{port}"
        ex_path = f"/v1/timebanks/{WRITES_BANK}/exchanges"
        postmaster = cluster.postmaster_pid()
        tb_probe = CpuProbe("timebank-pg", postmaster)
        loads: dict[str, Callable[[int], Run]] = {
            "pgbench": lambda d: run_pgbench(cfg, cluster, d),  # type: ignore[arg-type]
            "uniform": lambda d: run_wrk(
                cfg,
                base + ex_path,
                "post.lua",
                post_env("uniform", ex_path, writes_ids, wbank.broker),
                d,
                tb_probe,
            ),
            "uniform_idem": lambda d: run_wrk(
                cfg,
                base + ex_path,
                "post.lua",
                post_env("uniform", ex_path, writes_ids, wbank.broker, idem=True),
                d,
                tb_probe,
            ),
            "hot": lambda d: run_wrk(
                cfg,
                base + ex_path,
                "post.lua",
                post_env("hot", ex_path, writes_ids, wbank.broker, org=wbank.org_id or ""),
                d,
                tb_probe,
            ),
        }
        if hordak_port is not None:
            hurl = f"http://127.0.0.1:{hordak_port}/transfer"
            h_probe = CpuProbe("hordak", postmaster)
            loads["hordak"] = lambda d: run_wrk(
                cfg, hurl, "post.lua", post_env("hordak", "/transfer", hordak_ids), d, h_probe
            )
        runs: dict[str, list[Run]] = {k: [] for k in loads}
        with phase(f"write rounds: {cfg.repeats}× ({', '.join(loads)})"):
            for name, load in loads.items():
                if name != "pgbench":
                    load(cfg.warmup)
            for i in range(cfg.repeats):
                for name, load in loads.items():
                    r = load(cfg.duration)
                    runs[name].append(r)
                    say(
                        f"  round {i + 1} {name}: {r.value:,.0f}/s"
                        + (f" p99 {r.p99_ms:.0f} ms" if r.p99_ms is not None else "")
                        + (f" refused {r.refused_pct:.1f}%" if r.refused_pct else "")
                        + f" loadgen {r.loadgen_cpu_pct:.0f}% cpu"
                        + f" machine {r.machine_busy_pct:.0f}% busy"
                    )
        s = {k: summarise(v) for k, v in runs.items()}
        uniform = s["uniform"]["median"]

        def notes(x: dict[str, Any]) -> str:
            parts = []
            if x["p50_ms"] is not None:
                parts.append(f"p50 {x['p50_ms']:.1f} ms")
            if x["p99_ms"] is not None:
                parts.append(f"p99 {x['p99_ms']:.1f} ms")
            if x["refused_pct"] is not None:
                parts.append(f"refused (409) {x['refused_pct']:.2f}%")
            cpu = [
                f"{k} {x[k + '_cpu_ms']:.2f} ms"
                for k in ("app", "db")
                if x[k + "_cpu_ms"] is not None
            ]
            if cpu:
                parts.append("CPU per op: " + ", ".join(cpu))
            parts.append(f"load generator {x['loadgen_cpu_pct']:.0f}% of a core")
            parts.append(f"machine {x['machine_busy_pct']:.0f}% busy")
            return ", ".join(parts)

        rows.append(
            Row(
                f"POST exchange, uniform over {cfg.accounts:,} accounts (PG)",
                uniform,
                "/s",
                "pgbench tpcb-like",
                s["pgbench"]["median"],
                "≥ 0.5×",
                None,
                notes(s["uniform"]) + f"; pgbench: {notes(s['pgbench'])}",
                {"workload": s["uniform"], "anchor": s["pgbench"]},
            )
        )
        rows[-1].met = (rows[-1].ratio or 0) >= 0.5
        rows.append(
            Row(
                "POST exchange, all touching one organisation (PG)",
                s["hot"]["median"],
                "/s",
                "uniform",
                uniform,
                "≥ 0.3×",
                None,
                notes(s["hot"]),
                {"workload": s["hot"]},
            )
        )
        rows[-1].met = (rows[-1].ratio or 0) >= 0.3
        rows.append(
            Row(
                "POST exchange, uniform, with Idempotency-Key (PG)",
                s["uniform_idem"]["median"],
                "/s",
                "uniform",
                uniform,
                None,
                None,
                notes(s["uniform_idem"]),
                {"workload": s["uniform_idem"]},
            )
        )
        if "hordak" in s:
            rows.append(
                Row(
                    "ledger writes vs django-hordak transfer_to (PG)",
                    uniform,
                    "/s",
                    "hordak",
                    s["hordak"]["median"],
                    "≥ 2×",
                    None,
                    f"hordak: {notes(s['hordak'])}",
                    {"anchor": s["hordak"]},
                )
            )
            rows[-1].met = (rows[-1].ratio or 0) >= 2
            PROCS.stop("hordak")

        with phase(f"GET balance vs bare Litestar handler: {cfg.repeats}× interleaved"):
            bal_path = f"/v1/timebanks/{DATA_BANK}/members/{{id}}/balance"
            body = RESULTS / "work" / "balance.json"
            _, _, raw = api.call(
                "GET", bal_path.replace("{id}", dbank.member_ids[0]), token=dbank.broker
            )
            body.write_bytes(raw)
            bare_port = free_port()
            PROCS.start(
                "bare",
                [
                    str(PRODUCT_BIN / "python"),
                    str(BENCH / "serve.py"),
                    "bare_app:create_app",
                    "--port",
                    str(bare_port),
                    "--workers",
                    str(cfg.workers),
                    "--app-dir",
                    str(BENCH),
                ],
                {**os.environ, "BENCH_BARE_BODY": str(body)},
                BENCH,
            )
            wait_http(f"http://127.0.0.1:{bare_port}/health", "bare")
            get_env = {
                "BENCH_PATH": bal_path,
                "BENCH_IDS": str(data_ids),
                "BENCH_TOKEN": dbank.broker,
            }
            targets = {
                "balance": (base, tb_probe),
                "bare": (f"http://127.0.0.1:{bare_port}", CpuProbe("bare")),
            }
            gruns: dict[str, list[Run]] = {k: [] for k in targets}
            for url, probe in targets.values():
                run_wrk(cfg, url + "/", "get.lua", get_env, cfg.warmup, probe)
            for i in range(cfg.repeats):
                for name, (url, probe) in targets.items():
                    r = run_wrk(cfg, url + "/", "get.lua", get_env, cfg.duration, probe)
                    gruns[name].append(r)
                    say(
                        f"  round {i + 1} {name}: {r.value:,.0f}/s p50 {r.p50_ms:.1f} ms "
                        f"p99 {r.p99_ms:.1f} ms loadgen {r.loadgen_cpu_pct:.0f}% cpu"
                    )
            PROCS.stop("bare")
        g = {k: summarise(v) for k, v in gruns.items()}
        rows.append(
            Row(
                "GET member balance (PG)",
                g["balance"]["median"],
                "/s",
                "bare Litestar",
                g["bare"]["median"],
                "≥ 0.5×",
                None,
                notes(g["balance"]) + f"; bare: {notes(g['bare'])}",
                {"workload": g["balance"], "anchor": g["bare"]},
            )
        )
        rows[-1].met = (rows[-1].ratio or 0) >= 0.5
        p99 = g["balance"]["p99_ms"]
        rows.append(
            Row(
                "GET member balance p99 (PG)",
                p99,
                "ms",
                None,
                None,
                "< 20 ms",
                p99 is not None and p99 < 20,
                f"p50 {fmt(g['balance']['p50_ms'], 'ms')}",
            )
        )

        size = f"{cfg.exchanges:,} ex / {cfg.members:,} members"
        with phase(f"reports on PostgreSQL ({size})"):
            rep = time_reports(
                api,
                DATA_BANK,
                dbank.broker,
                ["summary", "timeseries", "categories"],
                cfg.report_calls,
                cfg.report_max_seconds,
            )
        for name, x in rep.items():
            rows.append(
                Row(
                    f"report {name} p50 (PG, {cfg.exchanges:,} ex)",
                    x["p50_ms"],
                    "ms",
                    None,
                    None,
                    "< 200 ms",
                    x["p50_ms"] < 200,
                    f"{size}; min {x['min_ms']:.0f} max {x['max_ms']:.0f} ms over "
                    f"{x['calls']} calls",
                    x,
                )
            )

        with phase(f"console pages on PostgreSQL ({size})"):  # benchmarks/console.py
            got = console.measure(
                port,
                product_env(pg_url),
                DATA_BANK,
                dbank.member_ids,
                calls=10 if cfg.quick else 30,
                cold_views=4 if cfg.quick else 8,
                label=f"PG, {cfg.exchanges:,} ex",
                say=say,
            )
            rows += [Row(**r) for r in got]

        with phase(f"batch import {cfg.batch_exchanges:,} exchanges (PG)"):
            b = batch_import(
                api, wbank, cfg.batch_exchanges, cfg.seed, "bench-pg", cfg.batch_max_seconds
            )
        rows.append(batch_row(cfg, "PG", b, "< 20 s"))
        with phase("sheet import: preview and commit of 1,000 lines (PG)"):
            rows += sheet_rows(sheet_import(api, wbank, 1000, cfg.seed, "bench-sheet"), "PG")
        PROCS.stop("timebank-pg")

        if "sqlite" not in cfg.skip:
            sqlite_dir = Path(tempfile.mkdtemp(prefix="timebank-bench-sqlite-"))
            sq_url = f"sqlite+aiosqlite:///{sqlite_dir / 'bench.db'}"
            with phase("SQLite: migrate + admin key"):
                timebank_cli(sq_url, "db", "upgrade")
                sq_admin = timebank_cli(sq_url, "keys", "create", "--role", "admin")
            facts["generate_sqlite"] = generate_banks(
                cfg, sq_url, "SQLite", cfg.sqlite_members, cfg.sqlite_exchanges
            )
            with phase("serve (SQLite), keys, id lists"):
                sq_port = serve_product("timebank-sqlite", sq_url, cfg.workers)
                sq_api = Api(sq_port)
                sq_wbank = writes_bank(sq_api, sq_admin, cfg.accounts)
                sq_dbank = data_bank(sq_api, sq_admin)
                sq_ids = write_ids("sqlite-writes-members", sq_wbank.member_ids)
            sq_base = f"http://127.0.0.1:{sq_port}"
            with phase(f"SQLite: POST uniform {cfg.repeats}×"):
                env = post_env("uniform", ex_path, sq_ids, sq_wbank.broker)
                sq_probe = CpuProbe("timebank-sqlite")
                run_wrk(cfg, sq_base + ex_path, "post.lua", env, cfg.warmup, sq_probe)
                sq_runs = []
                for i in range(cfg.repeats):
                    r = run_wrk(cfg, sq_base + ex_path, "post.lua", env, cfg.duration, sq_probe)
                    sq_runs.append(r)
                    say(f"  round {i + 1} sqlite uniform: {r.value:,.0f}/s p99 {r.p99_ms:.0f} ms")
            sq = summarise(sq_runs)
            rows.append(
                Row(
                    f"POST exchange, uniform over {cfg.accounts:,} accounts (SQLite)",
                    sq["median"],
                    "/s",
                    "PG uniform",
                    uniform,
                    None,
                    None,
                    notes(sq),
                    {"workload": sq},
                )
            )
            with phase(f"SQLite: batch import {cfg.batch_exchanges:,} exchanges"):
                b = batch_import(
                    sq_api,
                    sq_wbank,
                    cfg.batch_exchanges,
                    cfg.seed,
                    "bench-sq",
                    cfg.batch_max_seconds,
                )
            rows.append(batch_row(cfg, "SQLite", b, None))
            sq_size = f"{cfg.sqlite_exchanges:,} ex / {cfg.sqlite_members:,} members"
            with phase(f"reports on SQLite ({sq_size})"):
                sq_rep = time_reports(
                    sq_api,
                    DATA_BANK,
                    sq_dbank.broker,
                    ["summary", "timeseries", "categories"],
                    cfg.sqlite_report_calls,
                    cfg.report_max_seconds,
                )
            for name, x in sq_rep.items():
                rows.append(
                    Row(
                        f"report {name} p50 (SQLite, {cfg.sqlite_exchanges:,} ex)",
                        x["p50_ms"],
                        "ms",
                        None,
                        None,
                        "< 1 s",
                        x["p50_ms"] < 1000,
                        f"{sq_size}; min {x['min_ms']:.0f} max {x['max_ms']:.0f} ms "
                        f"over {x['calls']} calls",
                        x,
                    )
                )
            PROCS.stop("timebank-sqlite")
        completed = True
    finally:
        PROCS.stop_all()
        if cluster is not None:
            cluster.stop()
        if sqlite_dir is not None:
            shutil.rmtree(sqlite_dir, ignore_errors=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            report(cfg, started, rows, facts, completed)
        except Exception as exc:  # never hide the run's own error behind this one
            print(f"could not write the results: {exc!r}", file=sys.stderr)
    return 0


def report(
    cfg: Config, started: dt.datetime, rows: list[Row], facts: dict[str, Any], completed: bool
) -> None:
    """Print the table and write latest.json; also after an interrupted or failed run, with
    ``"complete": false`` and the rows measured so far."""
    total = time.monotonic() - T0
    print_table(rows)
    print("phases:")
    for p in PHASES:
        print(f"  {p.seconds:7.1f}s  {p.name}")
    print(f"  {total:7.1f}s  total" + ("" if completed else "  (INCOMPLETE RUN)"))
    result = {
        "date": started.isoformat(timespec="seconds"),
        "git_sha": facts["git_sha"],  # at the start: the code that was measured
        "quick": cfg.quick,
        "complete": completed,
        "config": {k: (sorted(v) if isinstance(v, set) else v) for k, v in cfg.__dict__.items()},
        "machine": machine_facts(facts.get("pg_version")),
        "facts": facts,
        "phases": [p.__dict__ for p in PHASES],
        "total_seconds": round(total, 1),
        "rows": [
            {
                "workload": r.workload,
                "value": r.value,
                "unit": r.unit,
                "anchor": r.anchor,
                "anchor_value": r.anchor_value,
                "ratio": r.ratio,
                "target": r.target,
                "met": r.met,
                "notes": r.notes,
                "details": r.details,
            }
            for r in rows
        ],
    }
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwrote {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    sys.exit(main())
