"""The Docker image and docker compose file fit the repository as it is: every path the Dockerfile copies
exists (the client included), every compose command is a `learngene` command that exists and takes those
arguments, and `docker compose config` accepts the file wherever Docker Compose is installed."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml
from typer.testing import CliRunner

from learngene_client import cli

ROOT = Path(__file__).resolve().parents[2]


def test_the_dockerfile_copies_paths_that_exist_and_installs_the_client():
    text = (ROOT / "Dockerfile").read_text()
    copies = re.findall(r"^COPY (.+) \S+$", text, re.M)
    sources = [s for line in copies for s in line.split()]
    assert "clients/python" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
    client_install = text.index("pip install ./clients/python")
    assert client_install < text.index("pip install -e .")  # the server's dependency is there first
    assert re.search(r'^CMD \["learngene", "api"\]$', text, re.M)


def test_compose_commands_are_learngene_commands(monkeypatch):
    import service.cli

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    seen = []
    monkeypatch.setattr(service.cli, "worker", lambda settings, extra: seen.append(("worker", extra)))
    monkeypatch.setattr(service.cli, "api", lambda settings: seen.append(("api", [])))
    for name in ("api", "grow", "worker"):
        command = compose["services"][name]["command"]
        assert command[0] == "learngene", name
        result = CliRunner().invoke(cli.app, command[1:])
        assert result.exit_code == 0, (name, result.output)
    assert seen == [("api", []), ("worker", ["-Q", "grow", "-c", "1", "-n", "grow@%h"]),
                    ("worker", ["-Q", "individuals", "-c", "1", "-n", "worker@%h"])]
    assert "/metrics" in (ROOT / "docker-compose.yml").read_text()  # the operations notes are there


def test_docker_compose_config_accepts_the_file_where_compose_exists():
    docker = shutil.which("docker")
    has_compose = docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    parsed = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert {"postgres", "redis", "minio", "createbucket", "api", "grow", "worker"} <= set(parsed["services"])
    if has_compose:  # no daemon needed: compose only resolves the file
        result = subprocess.run([docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                                capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0, result.stderr


def test_compose_keeps_artifacts_in_minio_and_shares_no_volume_between_services():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["minio"]["healthcheck"]["test"]
    bucket_step = " ".join(services["createbucket"]["command"])
    assert services["createbucket"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "mc mb" in bucket_step and "lg/learngene" in bucket_step
    mounts: dict[str, str] = {}
    for name in ("api", "grow", "worker"):
        env = services[name]["environment"]
        assert env["LEARNGENE_ARTIFACT_URL"] == "s3://learngene/artifacts", name
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000" and env["AWS_ACCESS_KEY_ID"] and env["AWS_REGION"]
        assert "LEARNGENE_ARTIFACT_DIR" not in env, name
        assert services[name]["depends_on"]["createbucket"]["condition"] == "service_completed_successfully"
        for volume in services[name].get("volumes", []):
            source = volume.split(":")[0]
            assert source not in mounts, f"{name} shares volume {source} with {mounts.get(source)}"
            mounts[source] = name
    assert "artifacts" not in compose["volumes"]  # the volume API and workers used to share is gone
