"""`make run` on a terminal: start-up output ends with the banner and the key hint, and Ctrl+C stops it with
exit status 0 (no `make: *** ... Error` / `Interrupt`). Runs make under a pseudo-terminal, as a user would."""
from __future__ import annotations

import os
import pty
import select
import time

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def _read(fd: int, out: bytearray, until: float) -> None:
    ready, _, _ = select.select([fd], [], [], max(0.0, min(0.5, until - time.time())))
    if ready:
        try:
            out += os.read(fd, 65536)
        except OSError:
            pass


def test_make_run_stops_on_ctrl_c_with_status_0(tmp_path, kit):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNGENE_")}
    env.update(LEARNGENE_PORT=str(kit.free_port()), LEARNGENE_DATA_DIR=str(tmp_path / "var"),
               LEARNGENE_EXTRACT_METHOD="gradient")
    pid, fd = pty.fork()
    if pid == 0:  # the child: make, on the pseudo-terminal
        os.chdir(ROOT)
        os.execvpe("make", ["make", "--no-print-directory", "run"], env)
    out, status = bytearray(), None
    try:
        deadline = time.time() + 120
        while b"worker log:" not in out and time.time() < deadline:
            _read(fd, out, deadline)
        assert b"worker log:" in out, out.decode(errors="replace")[-3000:]
        time.sleep(0.5)
        os.write(fd, b"\x03")  # Ctrl+C: the terminal sends SIGINT to its foreground process group
        deadline = time.time() + 60
        while status is None and time.time() < deadline:
            _read(fd, out, deadline)
            done, raw = os.waitpid(pid, os.WNOHANG)
            status = os.waitstatus_to_exitcode(raw) if done else None
    finally:
        if status is None:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
    text = out.decode(errors="replace")
    assert status == 0, text[-3000:]
    startup = text[:text.index("worker log:")]
    last_lines = startup.splitlines()[-5:]
    assert any("keys create --scope write" in line for line in last_lines), last_lines
    assert "Error" not in text and "Interrupt" not in text and "stopped" in text
