"""Bounds on what one client can make the API do: string lengths, idempotency keys bound to a key and a request,
rate limits per API key, concurrent uploads, and predictions batched on a bounded pool."""
from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from service.auth import create_key
from service.jobs import key_in_flight, key_scope
from service.models import ApiKey, Job, JobKind
from service.predict import Predictor
from service.uploads import UploadSlots


def test_a_300_character_filename_is_a_4xx_and_changes_nothing(api, make_task):
    long_name = "x" * 296 + ".npz"
    r = api.client.post("/tasks", files={"file": (long_name, make_task(["a", "b"], 4))})
    assert r.status_code == 422 and r.json()["type"] == "/problems/invalid-filename", r.text
    assert api.client.get("/tasks").json()["items"] == [] and api.sent == []
    r = api.client.post("/individuals", files={"file": (long_name, make_task(["a", "b"], 4))})
    assert r.status_code == 422 and r.json()["type"] == "/problems/invalid-filename", r.text


def test_an_idempotency_key_reused_with_another_body_is_422(api, make_task):
    headers = {"Idempotency-Key": "upload-1"}
    first = api.client.post("/tasks", files={"file": ("t.npz", make_task(["a", "b"], 4))}, headers=headers)
    assert first.status_code == 202
    other = api.client.post("/tasks", files={"file": ("t.npz", make_task(["c", "d"], 4))}, headers=headers)
    assert other.status_code == 422 and other.json()["type"] == "/problems/idempotency-key-reused", other.text
    renamed = api.client.post("/tasks", files={"file": ("t.npz", make_task(["a", "b"], 4))},
                              data={"name": "another"}, headers=headers)
    assert renamed.status_code == 422
    same = api.client.post("/tasks", files={"file": ("t.npz", make_task(["a", "b"], 4))}, headers=headers)
    assert same.status_code == 202 and same.json()["id"] == first.json()["id"]
    assert len(api.client.get("/tasks").json()["items"]) == 1 and len(api.sent) == 1


def test_idempotency_keys_belong_to_one_api_key(api, make_task):
    with api.ctx.sessions() as s:
        other_token, _ = create_key(s, "write", name="other team")
        s.commit()
    data = make_task(["a", "b"], 4)
    mine = api.client.post("/tasks", files={"file": ("t.npz", data)}, headers={"Idempotency-Key": "k"})
    theirs = api.client.post("/tasks", files={"file": ("t.npz", data)}, data={"allow_duplicate": "true"},
                             headers={"Idempotency-Key": "k", "Authorization": f"Bearer {other_token}"})
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["id"] != theirs.json()["id"]  # the same key string, two clients: two jobs


def test_a_request_whose_key_is_still_in_flight_is_409(api, make_task):
    with api.ctx.sessions() as s:
        key = s.scalar(select(ApiKey).where(ApiKey.name == "tests"))
    with key_in_flight(JobKind.task, "k", key_scope(key)):  # the first request with this key is being handled
        r = api.client.post("/tasks", files={"file": ("t.npz", make_task(["a", "b"], 4))},
                            headers={"Idempotency-Key": "k"})
    assert r.status_code == 409 and r.headers["retry-after"] == "1", r.text
    with api.ctx.sessions() as s:
        assert s.scalars(select(Job)).all() == []


def test_writes_past_the_rate_limit_get_429_with_retry_after(api):
    api.settings.rate_limit_writes = 2
    codes = [api.client.post("/collectives", json={"name": f"c{i}", "channels": 1, "size": 8}).status_code
             for i in range(3)]
    assert codes == [201, 201, 429]
    r = api.client.post("/collectives", json={"name": "c9", "channels": 1, "size": 8})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and r.json()["type"] == "/problems/rate-limited"
    assert api.client.get("/collectives/c9").status_code == 404  # refused before anything changed
    assert api.client.get("/collectives").status_code == 200  # reads are not limited


@pytest.mark.parametrize("wait_s", [0.0, 0.3])
def test_uploads_past_the_cap_wait_then_get_503_before_their_body_is_read(wait_s):
    entered, release = threading.Event(), threading.Event()

    async def slow_app(scope, receive, send):
        entered.set()
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = UploadSlots(slow_app, slots=1, wait_s=wait_s)

    async def scenario() -> tuple[int, int, str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            first = asyncio.create_task(client.post("/tasks", files={"file": ("a.npz", b"1")}))
            await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
            second = await client.post("/tasks", files={"file": ("b.npz", b"2")})  # after waiting wait_s
            release.set()
            done = await first
            third = await client.post("/tasks", files={"file": ("c.npz", b"3")})  # the slot is free again
            return [done.status_code, second.status_code, second.headers.get("retry-after"), third.status_code]

    assert asyncio.run(scenario()) == [202, 503, "5", 202]


@pytest.fixture
def individual(api, make_task) -> int:
    api.post_task(make_task(["a", "b"], 6))
    api.run_jobs()
    r = api.client.post("/individuals", files={"file": ("s.npz", make_task(["a", "b"], 3, seed=1))},
                        data={"epochs": "2"})
    api.run_jobs()
    return api.client.get(f"/jobs/{r.json()['id']}").json()["result"]["individual_id"]


def _images(n: int, seed: int) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, x=np.random.default_rng(seed).integers(0, 255, (n, 16, 16), dtype=np.uint8))
    return buf.getvalue()


def test_concurrent_predictions_are_batched_and_each_gets_its_own_answer(api, individual):
    predictor = api.client.app.state.predictor
    predictor.wait_s = 0.2  # a wide window, so the concurrent requests surely meet in one batch
    alone = {n: api.client.post(f"/individuals/{individual}/predictions",
                                files={"file": ("x.npz", _images(n, seed=n))}).json()["predictions"] for n in (1, 2, 3)}
    before = predictor.batches
    answers: dict[int, list] = {}

    def ask(n: int) -> None:
        r = api.client.post(f"/individuals/{individual}/predictions", files={"file": ("x.npz", _images(n, seed=n))})
        answers[n] = r.json()["predictions"]

    threads = [threading.Thread(target=ask, args=(n,)) for n in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert predictor.batches - before < 3  # fewer forward passes than requests
    for n in (1, 2, 3):
        assert [p["label"] for p in answers[n]] == [p["label"] for p in alone[n]] and len(answers[n]) == n


def test_predictions_past_the_queue_get_503_with_retry_after(api, individual):
    app = api.client.app
    app.state.predictor = predictor = Predictor(app.state.models, threads=1, max_queue=1)
    answers: list[int] = []

    def ask() -> None:
        answers.append(api.client.post(f"/individuals/{individual}/predictions",
                                       files={"file": ("x.npz", _images(1, 0))}).status_code)

    def until(condition) -> None:
        for _ in range(3000):  # a loaded machine may take a while; the condition is what matters
            if condition():
                return
            time.sleep(0.01)
        raise AssertionError("not reached")

    with app.state.models._lock:  # the pool's one thread blocks on its first request: nothing drains the queue
        running, waiting = threading.Thread(target=ask), threading.Thread(target=ask)
        running.start()
        until(lambda: predictor.taken == 1)
        waiting.start()
        until(lambda: predictor._queue.qsize() == 1)
        r = api.client.post(f"/individuals/{individual}/predictions", files={"file": ("x.npz", _images(1, 0))})
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert r.json()["type"] == "/problems/predictions-busy"
    for t in (running, waiting):
        t.join(30)
    assert answers == [200, 200]  # the two admitted requests were answered once the pool moved on


def test_predictions_past_the_rate_limit_get_429(api, individual):
    api.settings.rate_limit_predictions = 1
    codes = [api.client.post(f"/individuals/{individual}/predictions",
                             files={"file": ("x.npz", _images(1, 0))}).status_code for _ in range(2)]
    assert codes == [200, 429]

