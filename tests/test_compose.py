"""docker-compose.yml: the `ha` and `replica` profiles (docs/operations.md) are what they say,
and `docker-compose config` accepts each profile where docker-compose is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.servers import ROOT

COMPOSE = ROOT / "docker-compose.yml"


def _services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def _in(profile: str) -> set[str]:
    return {name for name, s in _services().items() if profile in s.get("profiles", [])}


def test_ha_profile_runs_etcd_two_patroni_nodes_and_the_service_on_a_multi_host_url() -> None:
    assert _in("ha") == {"etcd", "patroni1", "patroni2", "api-ha"}
    url = _services()["api-ha"]["environment"]["TIMEBANK_DATABASE_URL"]
    assert "host=patroni1:5432&host=patroni2:5432" in url
    assert url.endswith("target_session_attrs=read-write")
    config = yaml.safe_load((ROOT / "docker" / "patroni.yml").read_text())
    assert config["bootstrap"]["dcs"]["synchronous_mode"] is True


def test_replica_profile_runs_a_read_replica_the_service_reads_reports_from() -> None:
    assert _in("replica") == {"db-replica", "api-replica"}
    env = _services()["api-replica"]["environment"]
    assert "@db-replica:5432/" in env["TIMEBANK_REPLICA_DATABASE_URL"]
    assert "@db:5432/" in env["TIMEBANK_DATABASE_URL"]


@pytest.mark.parametrize("profiles", [[], ["ha"], ["replica"], ["ha", "replica"]])
def test_docker_compose_config_accepts_each_profile(profiles: list[str]) -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI=true but docker-compose is missing (.ci/run installs Debian's)")
        pytest.skip("docker-compose not installed (the structure is checked above)")
    args = [a for p in profiles for a in ("--profile", p)]
    done = subprocess.run(
        [tool, "-f", str(COMPOSE), *args, "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
