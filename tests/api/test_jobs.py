"""Job resources: polling, listing, cancelling queued and running jobs; the message a job sends."""
from __future__ import annotations

import threading
import time

import pytest
from kombu import Connection

from service.models import Job, JobKind
from service.queue import GROW_QUEUE, GROW_TASK, INDIVIDUAL_QUEUE, INDIVIDUAL_TASK, make_celery, send_job
from workers.grow import run_task_job


def test_cancel_a_queued_job_and_the_worker_skips_it(api, make_task):
    job = api.post_task(make_task(["a", "b"], 6))
    r = api.client.post(f"/jobs/{job['id']}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    api.run_jobs()  # the message is still delivered: the worker must leave the job alone
    after = api.client.get(f"/jobs/{job['id']}").json()
    assert after["status"] == "cancelled" and after["attempts"] == 0 and after["result"] is None
    assert api.client.get(job["links"]["task"]).json()["status"] == "cancelled"
    again = api.client.post(f"/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
    assert api.client.get("/learngenes").json()["items"] == []


def test_cancel_a_running_job_stops_training(api, make_task):
    job = api.post_task(make_task(["a", "b"], 8), epochs="1000")
    api.sent.clear()
    worker = threading.Thread(target=run_task_job, args=(api.ctx, job["id"]))
    worker.start()
    deadline = time.monotonic() + 60
    while api.client.get(f"/jobs/{job['id']}").json()["progress"].get("epoch") is None:
        assert time.monotonic() < deadline, "training never reported an epoch"
        time.sleep(0.05)
    running = api.client.get(f"/jobs/{job['id']}")
    body = running.json()
    assert body["status"] == "running" and body["progress"]["epochs"] == 1000 and body["progress"]["loss"] is not None
    assert running.headers["retry-after"]
    r = api.client.post(f"/jobs/{job['id']}/cancel")
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    worker.join(60)
    assert not worker.is_alive()
    final = api.client.get(f"/jobs/{job['id']}").json()
    assert final["status"] == "cancelled" and final["progress"]["epoch"] < 1000
    assert api.client.get("/collectives/default").json()["head"] is None  # no version from a cancelled job


def test_list_jobs_by_status_and_kind(api, make_task):
    ids = [api.post_task(make_task(["a", "b"], 4, seed=i))["id"] for i in range(3)]
    api.client.post(f"/jobs/{ids[1]}/cancel")
    assert [j["id"] for j in api.client.get("/jobs", params={"status": "queued"}).json()["items"]] == [ids[2], ids[0]]
    assert [j["id"] for j in api.client.get("/jobs", params={"status": "cancelled"}).json()["items"]] == [ids[1]]
    assert api.client.get("/jobs", params={"kind": "individual"}).json()["items"] == []
    assert api.client.get("/jobs", params={"status": "exploded"}).status_code == 422


def test_a_job_message_carries_only_the_job_id(tmp_path, settings_for):
    """Through a real kombu transport (in memory): the task name, the queue, and args == [job id]."""
    settings = settings_for(tmp_path, broker_url="memory://")
    app = make_celery(settings)
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    send_job(app, Job(id=41, kind=JobKind.task))
    send_job(app, Job(id=42, kind=JobKind.individual))
    with Connection("memory://") as conn:
        grow = conn.SimpleQueue(GROW_QUEUE)
        individuals = conn.SimpleQueue(INDIVIDUAL_QUEUE)
        for queue, task_name, job_id in ((grow, GROW_TASK, 41), (individuals, INDIVIDUAL_TASK, 42)):
            message = queue.get(timeout=2)
            args, kwargs, _embed = message.decode()
            assert message.headers["task"] == task_name and args == [job_id] and kwargs == {}
            message.ack()
            assert queue.qsize() == 0  # one message per job, on its own queue only


def test_two_requests_racing_with_one_idempotency_key_get_one_job(api):
    """The unique (kind, key) pair settles a race that the API's look-up before insert cannot see."""
    from service.jobs import DuplicateRequest, submit

    with api.ctx.sessions() as first, api.ctx.sessions() as second:
        winner = submit(first, lambda job: None, Job(kind=JobKind.individual, idempotency_key="k1", params={}))
        with pytest.raises(DuplicateRequest) as lost:
            submit(second, lambda job: pytest.fail("the losing request must not send a message"),
                   Job(kind=JobKind.individual, idempotency_key="k1", params={}))
        assert lost.value.job.id == winner.id
    assert [j["id"] for j in api.client.get("/jobs").json()["items"]] == [winner.id]


def test_a_job_shows_where_it_ran_worker_and_device(api, make_task):
    job = api.post_task(make_task(["a", "b"], 6))
    assert api.client.get(f"/jobs/{job['id']}").json()["device"] is None  # not run yet
    api.run_jobs()
    done = api.client.get(f"/jobs/{job['id']}").json()
    assert done["status"] == "succeeded" and done["worker"] == "test@api"
    assert done["device"] == api.ctx.device and done["device"].startswith(("cpu (", "cuda:"))
    for page in ("/ui/jobs", f"/ui/jobs/{job['id']}"):
        html = api.client.get(page).text
        assert "test@api" in html and done["device"] in html
