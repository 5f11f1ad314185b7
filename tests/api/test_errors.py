"""Every error is problem+json, and a bad upload leaves no row and no file behind."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from sqlalchemy import func, select

from service.app import create_app
from service.models import Collective, Job, Task


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def escaping_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../evil/a.png", b"x")
    return buf.getvalue()


def zip_with(name: str, data: bytes, compress: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        z.writestr(name, data)
    return buf.getvalue()


BAD_UPLOADS = {
    "not a dataset": (b"hello, world", "expected an .npz or a .zip"),
    "no labels": (npz(x=np.zeros((4, 8, 8), np.uint8)), "no array named 'y'"),
    "one class": (npz(x=np.zeros((4, 8, 8), np.uint8), y=np.zeros(4, np.int64)), "at least 2 classes"),
    "too few per class": (npz(x=np.zeros((3, 8, 8), np.uint8), y=np.array([0, 0, 1])), "samples per class"),
    "float images": (npz(x=np.zeros((4, 8, 8), np.float32), y=np.array([0, 0, 1, 1])), "uint8"),
    "lengths differ": (npz(x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 1])), "must match"),
    "pickled objects": (npz(x=np.array([object()] * 4, dtype=object), y=np.array([0, 0, 1, 1])), "pickled"),
    "zip escapes": (escaping_zip(), "escapes"),
    "absolute zip path": (zip_with("/etc/a.png", b"x"), "escapes"),
    "zip bomb": (zip_with("a/0.png", b"\0" * 5_000_000, compress=True), "zip bomb"),
    "not an image in the zip": (zip_with("a/0.png", b"plain text, not a png"), "not an image"),
    "NaN images": (npz(x=np.full((4, 8, 8), np.nan, np.float32), y=np.array([0, 0, 1, 1])), "NaN"),
    "wrong rank": (npz(x=np.zeros((4, 8), np.uint8), y=np.array([0, 0, 1, 1])), "rank"),
    "images far too large": (npz(x=np.zeros((2, 1100, 8), np.uint8), y=np.array([0, 1])), "exceed"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_task_upload_is_422_and_leaves_nothing(api, case):
    data, message = BAD_UPLOADS[case]
    r = api.client.post("/tasks", files={"file": ("upload.npz", data)})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 422 and body["type"] == "/problems/invalid-dataset" and message in body["detail"]
    assert "Traceback" not in r.text
    assert_nothing_left(api)


def test_body_over_the_limit_is_413_before_parsing(tmp_path, make_task, settings_for):
    from fastapi.testclient import TestClient

    from service.migrate import upgrade

    settings = settings_for(tmp_path, max_upload_bytes=2000)
    upgrade(settings)
    sent = []
    with TestClient(create_app(settings, enqueue=sent.append)) as client:
        r = client.post("/tasks", files={"file": ("big.npz", make_task(["a", "b"], 20))})
        assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == "/problems/upload-too-large"
        # Streamed without a Content-Length: counted while read, refused all the same.
        chunks = iter([b"x" * 1500, b"y" * 1500])
        r = client.post("/tasks", content=chunks, headers={"content-type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413 and r.json()["status"] == 413
    assert sent == []
    assert not any((settings.artifacts).rglob("*"))


def test_request_errors_are_problems(api):
    cases = [
        (api.client.post("/tasks", data={"name": "no file"}), 422),
        (api.client.post("/tasks", files={"file": ("t.npz", b"x")}, data={"epochs": "many"}), 422),
        (api.client.get("/nowhere"), 404),
        (api.client.delete("/tasks"), 405),
        (api.client.get("/tasks/abc"), 422),
        (api.client.get("/learngenes", params={"cursor": "bogus!"}), 422),
        (api.client.get("/jobs/12345"), 404),
        (api.client.post("/collectives", json={"name": "../x", "channels": 2, "size": 3}), 422),
    ]
    for r, status in cases:
        assert r.status_code == status, (r.request.url, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        body = r.json()
        assert body["status"] == status and body["title"] and body["type"]
    assert_nothing_left(api)


def assert_nothing_left(api) -> None:
    with api.ctx.sessions() as s:
        for model in (Task, Job, Collective):
            assert s.scalar(select(func.count()).select_from(model)) == 0, model.__name__
    assert not [p for p in api.settings.artifacts.rglob("*") if p.is_file()]
    assert api.sent == []


def test_a_failed_request_takes_back_only_the_files_no_row_uses(api, make_task):
    from service.jobs import stored_uploads

    kept = api.post_task(make_task(["a", "b"], 4))  # its upload is referenced by a task row
    kept_sha = api.client.get(kept["links"]["task"]).json()["sha256"]
    with api.ctx.sessions() as s, pytest.raises(RuntimeError):
        with stored_uploads(s, api.ctx.store, make_task(["a", "b"], 4), b"orphan bytes") as digests:
            assert digests[0] == kept_sha and all(api.ctx.store.exists(d) for d in digests)
            raise RuntimeError("the request failed after storing its uploads")
    assert api.ctx.store.exists(kept_sha) and not api.ctx.store.exists(digests[1])


def test_an_unreachable_broker_is_a_503_and_the_job_is_failed(tmp_path, make_task, settings_for, kit):
    """A real Redis client against a port nothing listens on: the job row exists (it was committed first),
    is marked failed, and the client is told to retry later."""
    from fastapi.testclient import TestClient

    from service.migrate import upgrade

    settings = settings_for(tmp_path, broker_url=f"redis://127.0.0.1:{kit.free_port()}/0")
    upgrade(settings)
    with TestClient(create_app(settings)) as client:
        r = client.post("/tasks", files={"file": ("t.npz", make_task(["a", "b"], 4))})
        assert r.status_code == 503 and r.headers["retry-after"] == "10"
        assert r.json()["type"] == "/problems/queue-unavailable"
        jobs = client.get("/jobs").json()["items"]
        assert [j["status"] for j in jobs] == ["failed"] and "could not queue" in jobs[0]["error"]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["broker"].startswith("unavailable")
