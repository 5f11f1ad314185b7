"""`learngene serve` as a real process: start-up output ends with the banner and the key hint (the worker's
own output goes to its log), and SIGTERM or SIGINT stop it cleanly with exit status 0, worker included."""
from __future__ import annotations

import signal

import httpx
import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_a_signal(sig, tmp_path, kit):
    port = kit.free_port()
    data = tmp_path / "var"
    log = tmp_path / "serve.log"
    proc = kit.spawn(["-m", "learngene_client.cli", "serve", "--port", str(port), "--data-dir", str(data)],
                     {"extract_method": "gradient"}, log)
    try:
        kit.wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc, log=log)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code in (200, 503)
        proc.send_signal(sig)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    finally:
        kit.stop(proc)
    out = log.read_text()
    assert f"registry: {data.resolve() / 'registry.sqlite3'}" in out
    startup = out[:out.index("stopped")] if "stopped" in out else out
    banner_at = startup.index("Learngene service: ")
    after = startup[banner_at:].splitlines()
    assert any(f"LEARNGENE_DATA_DIR={data.resolve()} " in line and "keys create --scope write" in line for line in after)
    assert "celery@" not in startup[banner_at:] and "superuser" not in startup  # the worker writes to its log
    assert (data / "worker.log").is_file()  # where the worker's output went (it may not have written yet)
