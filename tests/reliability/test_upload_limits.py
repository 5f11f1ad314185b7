"""Uploads cannot blow up the API's memory: a compressed .npz that would inflate to ~800 MB is refused from
its headers, measured as the API process's peak RSS (a real app in a subprocess of its own)."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np

from tests.conftest import ROOT

BOMB_SHAPE = (195_313, 64, 64)  # uint8 images: 800 MB once inflated, ~0.8 MB deflated (all zeros)

CHILD = r"""
import json, resource, sys
from fastapi.testclient import TestClient
from service.app import create_app
from service.migrate import upgrade
from service.settings import Settings

settings = Settings(data_dir=sys.argv[1], auth=False)
upgrade(settings)
with TestClient(create_app(settings), raise_server_exceptions=False) as client:
    with open(sys.argv[3], "rb") as f:  # warm up every path of an accepted upload first
        ok = client.post("/tasks", files={"file": ("ok.npz", f)}, data={"epochs": "1"})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(sys.argv[2], "rb") as f:
        r = client.post("/tasks", files={"file": ("bomb.npz", f)})
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"ok": ok.status_code, "status": r.status_code, "body": r.json(),
                  "before_kb": before, "after_kb": after}))
"""


def write_bomb(path) -> None:
    """An .npz whose `x` header declares BOMB_SHAPE, written in chunks (this process never holds it)."""
    chunk = np.zeros(8 << 20, np.uint8).tobytes()
    total = int(np.prod(BOMB_SHAPE))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": BOMB_SHAPE})
            for start in range(0, total, len(chunk)):
                f.write(chunk[: min(len(chunk), total - start)])
        with zf.open("y.npy", "w") as f:
            np.save(f, np.zeros(BOMB_SHAPE[0], np.int64)[:2])


def test_an_npz_bomb_is_refused_before_it_is_inflated(tmp_path, make_task, kit):
    bomb = tmp_path / "bomb.npz"
    write_bomb(bomb)
    assert bomb.stat().st_size < 2 << 20
    small = tmp_path / "ok.npz"
    small.write_bytes(make_task(["a", "b"], 4))
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "var"), str(bomb), str(small)],
                         capture_output=True, text=True, timeout=300, env=kit.service_env({}),
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["ok"] == 202
    print(f"\nRELIABILITY npz bomb: API peak RSS {report['before_kb'] / 1024:.0f} MB before, "
          f"{report['after_kb'] / 1024:.0f} MB after a refused 800 MB bomb ({bomb.stat().st_size >> 10} KB)")
    grown_mb = (report["after_kb"] - report["before_kb"]) / 1024
    assert grown_mb < 100, f"the API's peak memory grew by {grown_mb:.0f} MB for a refused upload"
    assert report["status"] == 422 and report["body"]["type"] == "/problems/invalid-dataset", report
    assert "unpack" in report["body"]["detail"] or "compressed" in report["body"]["detail"]


def test_an_npy_header_promising_more_than_its_member_holds_is_refused_from_the_header():
    import io

    import pytest

    from learngene.data import DatasetError, load_dataset

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # stored, not deflated: no ratio to catch it
        with zf.open("x.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False,
                                                     "shape": (100_000, 64, 64)})
            f.write(b"\0" * 100)
        with zf.open("y.npy", "w") as f:
            np.save(f, np.arange(3))
    with pytest.raises(DatasetError, match="declares 409600000 bytes"):
        load_dataset(buf.getvalue())
    objects = io.BytesIO()
    np.savez(objects, x=np.zeros((2, 4, 4), np.uint8), y=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DatasetError, match="pickled objects"):
        load_dataset(objects.getvalue())
