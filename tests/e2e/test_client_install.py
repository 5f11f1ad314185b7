"""The client on its own: a fresh virtual environment with only `pip install ./clients/python` runs
`learngene --help` and `learngene learngenes list` against a real service over HTTP, has no torch, and says
how to install the server when asked to run one. (Slow-ish: one venv, one pip install.)"""
from __future__ import annotations

import os
import subprocess
import venv

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def test_the_client_installs_and_works_without_the_server(tmp_path, kit):
    env_dir = tmp_path / "client-venv"
    venv.create(env_dir, with_pip=True)
    py, learngene = env_dir / "bin" / "python", env_dir / "bin" / "learngene"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LEARNGENE_", "PYTHONPATH", "VIRTUAL_ENV"))}
    installed = subprocess.run([py, "-m", "pip", "install", "-q", str(ROOT / "clients" / "python")], env=clean,
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-2000:]

    def run(*args, **env) -> subprocess.CompletedProcess:
        return subprocess.run([str(a) for a in args], env={**clean, **env}, cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)

    assert run(py, "-c", "import torch").returncode != 0
    assert run(py, "-c", "import service").returncode != 0 and run(py, "-c", "import numpy").returncode != 0
    helped = run(learngene, "--help")
    assert helped.returncode == 0 and "learngenes" in helped.stdout and "serve" in helped.stdout
    no_server = run(learngene, "serve")
    assert no_server.returncode == 1 and "pip install -e ." in no_server.stderr

    port = kit.free_port()
    log = tmp_path / "service.log"
    service = kit.spawn(["-m", "learngene_client.cli", "serve", "--port", str(port), "--data-dir",
                         str(tmp_path / "var")], {"extract_method": "gradient"}, log)
    try:
        kit.wait_http(f"http://127.0.0.1:{port}/healthz", proc=service, log=log)
        listed = run(learngene, "--url", f"http://127.0.0.1:{port}", "learngenes", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert '"items": []' in listed.stdout
        table = run(learngene, "learngenes", "list", LEARNGENE_URL=f"http://127.0.0.1:{port}")
        assert table.returncode == 0 and table.stdout.split()[:3] == ["id", "collective", "method"]
    finally:
        kit.stop(service)
