"""The benchmark's PostgreSQL cluster: the test suite's throwaway cluster (tests/pg.py),
but durable — ``fsync``, ``synchronous_commit`` and ``full_page_writes`` on, since it
measures a ledger that keeps its promises (SPEC §2.6) — with room for bulk loading. Run as
the ``postgres`` user when we are root. The caller must call :meth:`Cluster.stop`
(``run.py`` does, in ``finally`` and on signals).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.pg import Cluster, find_pg_bin, start_cluster

__all__ = ["PG_BIN", "Cluster", "start"]

PG_BIN = Path(os.environ.get("BENCH_PG_BIN") or find_pg_bin() or "/usr/lib/postgresql/15/bin")


def start(shared_buffers: str = "256MB", max_connections: int = 200) -> Cluster:
    """A durable cluster in a temp dir, listening on a unix socket only."""
    return start_cluster(
        fsync=True,
        bin=PG_BIN,
        prefix="timebank-bench-pg-",
        port_base=25432,
        stop_mode="fast",
        settings={
            "max_connections": str(max_connections),
            "shared_buffers": shared_buffers,
            # bulk generation would otherwise checkpoint every few seconds
            "max_wal_size": "4GB",
            "checkpoint_timeout": "15min",
        },
    )
