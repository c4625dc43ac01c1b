"""docs/deploy.md's systemd unit, its environment file and its Prometheus job, read from the doc itself so that the
doc cannot drift from what is checked: systemd's own `systemd-analyze verify` on the unit, the settings model on
the environment file, and a real server scraped as the job says."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from medstream.admin.environment import check_environment
from medstream.server.settings import Settings
from tests.conftest import IN_CI
from tests.integration.raw_events import WAIT, dedicated_server

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "deploy.md").read_text()
DOC_MEDSTREAM = "/opt/medstream/bin/medstream"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, re.S)


def _unit() -> str:
    (unit,) = [block for block in _blocks("ini") if block.startswith("[Unit]")]
    return unit


def _environment() -> dict[str, str]:
    (block,) = [block for block in _blocks("ini") if block.startswith("MEDSTREAM_")]
    return dict(line.split("=", 1) for line in block.splitlines() if line and not line.startswith("#"))


def _verify(unit: str, directory: Path) -> str:
    """What `systemd-analyze verify` says of `unit` (nothing when all is well; it exits 0 on warnings too)."""
    if SYSTEMD_ANALYZE is None:
        if IN_CI:
            pytest.fail("systemd-analyze is not installed (CI=true: the unit must be verified)")
        pytest.skip("systemd-analyze is not installed: apt-get install systemd")
    path = directory / "medstream.service"
    path.write_text(unit)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    return (result.stdout + result.stderr).strip() + ("" if result.returncode == 0 else f" (exit {result.returncode})")


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = _unit()
    assert f"ExecStart={DOC_MEDSTREAM} serve" in unit
    # The doc's install path, made this checkout's: verify checks that the command is there and executable.
    here = unit.replace(DOC_MEDSTREAM, str(Path(sys.executable).with_name("medstream")))
    assert _verify(here, tmp_path) == ""
    for option in ("NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=medstream", "Restart=on-failure"):
        assert option in unit.splitlines()


def test_verify_would_name_a_mistake_in_the_unit(tmp_path: Path) -> None:
    # The check above is worth something only if verify speaks up: a misspelt option is named.
    here = _unit().replace(DOC_MEDSTREAM, str(Path(sys.executable).with_name("medstream")))
    said = _verify(here.replace("ProtectSystem=strict", "ProtectSystem=stricter"), tmp_path)
    assert "stricter" in said


def test_the_environment_file_names_only_settings_with_valid_values(tmp_path: Path) -> None:
    variables = _environment()
    check_environment(variables)  # an unknown MEDSTREAM_* variable would stop the server (exit 2)
    path = tmp_path / "medstream.env"
    path.write_text("".join(f"{name}={value}\n" for name, value in variables.items()))
    settings = Settings(_env_file=path)  # pydantic-settings reads a dotenv file as systemd reads EnvironmentFile=
    assert settings.database_url == "sqlite:////var/lib/medstream/medstream.db"  # in the unit's StateDirectory
    assert settings.host == "127.0.0.1" and settings.port == 8081  # the nginx upstream's first node
    assert settings.metrics_token == variables["MEDSTREAM_METRICS_TOKEN"]


async def test_the_prometheus_job_scrapes_a_node_from_another_host(tmp_path: Path) -> None:
    (config,) = [yaml.safe_load(block) for block in _blocks("yaml") if "scrape_configs" in block]
    (job,) = config["scrape_configs"]
    authorization = job["authorization"]
    token = "a-token-as-the-credentials-file-holds-it"
    (tmp_path / "token").write_text(token + "\n")
    async with dedicated_server(tmp_path, metrics_token=token) as server:
        target = server.url.removeprefix("http://")
        credentials = (tmp_path / "token").read_text().strip()  # Prometheus strips the file's trailing newline
        headers = {"Authorization": f"{authorization['type']} {credentials}", "X-Forwarded-For": "198.51.100.7"}
        async with httpx.AsyncClient(timeout=WAIT) as http:
            answer = await http.get(f"http://{target}{job.get('metrics_path', '/metrics')}", headers=headers)
            refused = await http.get(f"http://{target}/metrics", headers={"X-Forwarded-For": "198.51.100.7"})
    assert answer.status_code == 200 and "medstream_http_requests_total" in answer.text
    assert refused.status_code == 401
    assert all(":" in target for target in job["static_configs"][0]["targets"])
