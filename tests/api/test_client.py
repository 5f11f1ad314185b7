"""The Python client (learngene_client) over the in-process app: every method, its errors, `wait`, and
the SSE parser on its own."""
from __future__ import annotations

import io
import threading

import httpx
import numpy as np
import pytest
from safetensors.numpy import load as load_safetensors

from learngene_client import (
    ApiError,
    Client,
    ConnectionFailed,
    IndividualPublic,
    JobPublic,
    LearngeneDetail,
    Page,
    ServerSentEvent,
    parse_sse,
)
from learngene_client import _client as client_module

from .conftest import API_KEY


@pytest.fixture
def client(api) -> Client:
    """A client with its own key over the app's TestClient, which then sends no key of its own."""
    del api.client.headers["authorization"]
    return Client(api_key=API_KEY, http=api.client)


def _run_jobs_after_first_report(api):
    """An on_progress that records jobs and, at its first call, starts running the queue in a thread: the
    job is seen queued first, then runs while `wait` follows it."""
    seen: list[JobPublic] = []
    worker = threading.Thread(target=api.run_jobs)

    def on_progress(job: JobPublic) -> None:
        seen.append(job)
        if len(seen) == 1:
            worker.start()

    return seen, on_progress, worker


def _grow(api, client, make_task, n: int = 2) -> list[JobPublic]:
    jobs = [client.create_task(make_task(["a", "b", "c"] if i == 0 else ["c", "d"], 6, seed=i), name=f"t{i}",
                               epochs=1) for i in range(n)]
    api.run_jobs()
    return [client.get_job(j.id) for j in jobs]


def test_health_readiness_and_collectives(api, client):
    assert client.health() == {"status": "ok"}
    ready = client.ready()  # no worker process beats here: a 503, returned rather than raised
    assert ready.status == "unavailable" and ready.checks["database"] == "ok"
    made = client.create_collective("rgb", channels=3, size=16)
    assert (made.name, made.channels, made.head) == ("rgb", 3, None)
    assert [c.name for c in client.list_collectives()] == ["rgb"]
    assert client.get_collective("rgb").size == 16
    with pytest.raises(ApiError) as exists:
        client.create_collective("rgb", channels=3, size=16)
    assert exists.value.status == 409 and exists.value.type == "/problems/collective-exists"


def test_tasks_learngenes_and_weights(api, client, make_task):
    done = _grow(api, client, make_task)
    assert [j.status for j in done] == ["succeeded", "succeeded"]
    tasks = client.list_tasks(collective="default")
    assert isinstance(tasks, Page) and [t.name for t in tasks.items] == ["t1", "t0"]
    task = client.get_task(done[1].result["task_id"])
    assert task.new_classes == ["d"] and task.collective_version == 2
    assert [lg.collective_version for lg in client.list_learngenes().items] == [2, 1]
    assert [lg.collective_version for lg in client.list_learngenes(collective_version=1).items] == [1]
    assert client.list_learngenes(max_parameters=0).items == []
    detail = client.get_learngene(done[1].result["learngene_id"])
    assert isinstance(detail, LearngeneDetail) and detail.lineage.parent_version == 1
    tensors = load_safetensors(client.learngene_weights(detail.id))
    assert tensors  # safetensors bytes that load


def test_task_upload_by_path_with_an_idempotency_key(api, client, make_task, tmp_path):
    path = tmp_path / "pets.npz"
    path.write_bytes(make_task(["a", "b"], 4))
    first = client.create_task(path, idempotency_key="upload-1")
    again = client.create_task(path, idempotency_key="upload-1")
    assert first.id == again.id and first.status == "queued"
    task_id = int(first.links["task"].rsplit("/", 1)[1])
    assert client.get_task(task_id).name == "pets.npz"  # the file name is the default task name


def test_individuals_predictions_and_wait(api, client, make_task):
    _grow(api, client, make_task, n=1)
    support = make_task(["p", "q"], 4, seed=5)
    job = client.create_individual(support, eval_file=make_task(["p", "q"], 3, seed=6), epochs=3, seed=1)
    assert job.kind == "individual" and job.status == "queued"
    seen, on_progress, worker = _run_jobs_after_first_report(api)
    final = client.wait(job, on_progress=on_progress)
    worker.join()
    assert final.status == "succeeded" and final.result["individual_id"]
    assert seen[0].status == "queued" and seen[-1] == final
    assert "running" in [j.status for j in seen]

    ind = client.get_individual(final.result["individual_id"])
    assert isinstance(ind, IndividualPublic) and ind.classes == ["p", "q"] and "eval_accuracy" in ind.metrics
    assert [i.id for i in client.list_individuals(learngene_id=ind.learngene_id).items] == [ind.id]
    x = np.load(io.BytesIO(support))["x"][:3]
    buf = io.BytesIO()
    np.savez(buf, x=x)
    predictions = client.predict(ind.id, ("x.npz", buf.getvalue())).predictions
    assert len(predictions) == 3 and {p.label for p in predictions} <= {"p", "q"}
    assert load_safetensors(client.individual_weights(ind.id))


def test_jobs_list_events_and_cancel(api, client, make_task):
    job = client.create_task(make_task(["a", "b"], 4))
    assert [j.id for j in client.list_jobs(status="queued").items] == [job.id]
    cancelled = client.cancel_job(job.id)
    assert cancelled.status == "cancelled"
    events = list(client.job_events(job.id))
    assert [e.event for e in events] == ["status", "end"] and events[-1].job.status == "cancelled"
    assert client.wait(job.id).status == "cancelled"  # returned, not raised: the caller decides
    with pytest.raises(ApiError) as finished:
        client.cancel_job(job.id)
    assert finished.value.status == 409 and str(finished.value).startswith("409 Job already finished: job ")


def test_errors_are_api_errors_with_one_readable_line(api, client, make_task):
    with pytest.raises(ApiError) as missing:
        client.get_job(999)
    assert (missing.value.status, missing.value.title, missing.value.type) == (404, "Not Found", "/problems/not-found")
    assert str(missing.value) == "404 Not Found: job 999 does not exist"
    _grow(api, client, make_task, n=1)
    with pytest.raises(ApiError) as invalid:
        client.create_individual(make_task(["p", "q"], 3), eval_file=make_task(["x", "y"], 3))
    assert str(invalid.value) == "422 Invalid dataset: eval_file shares no class name with file"
    with pytest.raises(ApiError) as missing_event_job:
        client.wait(12345)
    assert missing_event_job.value.status == 404


def test_writes_need_the_key_and_reads_do_not(api, make_task):
    del api.client.headers["authorization"]
    anonymous = Client(api_key="", http=api.client)  # "" : no key, whatever LEARNGENE_API_KEY says
    with pytest.raises(ApiError) as refused:
        anonymous.create_task(make_task(["a", "b"], 4))
    assert refused.value.status == 401 and refused.value.title == "Unauthorized"
    assert anonymous.list_jobs().items == []
    sent = []
    api.client.event_hooks["request"].append(lambda request: sent.append(request.headers.get("authorization")))
    Client(api_key=API_KEY, http=api.client).create_task(make_task(["a", "b"], 4))
    assert sent == [f"Bearer {API_KEY}"]


def test_the_url_and_key_default_to_the_environment(monkeypatch):
    monkeypatch.setenv("LEARNGENE_URL", "http://lg.example:9000/")
    monkeypatch.setenv("LEARNGENE_API_KEY", "lgk_env")
    with Client() as client:
        assert client.url == "http://lg.example:9000" and client.api_key == "lgk_env"
    monkeypatch.delenv("LEARNGENE_URL")
    with Client(api_key="lgk_given") as client:
        assert client.url == "http://127.0.0.1:8000" and client.api_key == "lgk_given"


def test_an_unreachable_service_is_a_clear_connection_error(kit):
    url = f"http://127.0.0.1:{kit.free_port()}"
    with Client(url) as client, pytest.raises(ConnectionFailed) as failed:
        client.list_jobs()
    assert str(failed.value).startswith(f"cannot reach {url}: ")


def test_wait_polls_a_server_without_the_events_endpoint(api, client, make_task, monkeypatch):
    """An older server answers 404 on /events for a job that exists: `wait` falls back to GET /jobs/{id}."""
    job = client.create_task(make_task(["a", "b"], 4), epochs=1)
    monkeypatch.setattr(client_module, "MAX_POLL_S", 0.05)  # the app's Retry-After (2 s) capped, to stay quick

    def no_events(job_id, **_):
        raise ApiError(404, "Not Found")
        yield  # a generator, like the real method

    monkeypatch.setattr(client, "job_events", no_events)
    seen, on_progress, worker = _run_jobs_after_first_report(api)
    final = client.wait(job, on_progress=on_progress, timeout=60)
    worker.join()
    assert final.status == "succeeded" and seen[0].status == "queued" and seen[-1].status == "succeeded"
    with pytest.raises(ApiError) as unknown:  # the fallback does not hide a job that does not exist
        client.wait(4242)
    assert unknown.value.status == 404


def test_wait_polls_when_the_stream_breaks_and_gives_up_after_its_timeout(api, client, make_task, monkeypatch):
    job = client.create_task(make_task(["a", "b"], 4))  # never run: stays queued
    monkeypatch.setattr(client_module, "MAX_POLL_S", 0.05)
    polled = []
    api.client.event_hooks["request"].append(lambda request: polled.append(request.url.path))

    def broken_stream(job_id, **_):
        raise ConnectionFailed(client.url, httpx.ReadTimeout("timed out"))
        yield

    monkeypatch.setattr(client, "job_events", broken_stream)
    with pytest.raises(TimeoutError, match=f"job {job.id} is still queued after 0.3 s"):
        client.wait(job, timeout=0.3)
    assert len(polled) >= 2 and set(polled) == {f"/jobs/{job.id}"}


# ------------------------------------------------------------------------------------------- SSE parser


def _parse(text: str) -> list[ServerSentEvent]:
    return list(parse_sse(text.split("\n")))


def test_sse_multi_line_data_is_joined_with_newlines():
    assert _parse("event: status\ndata: first\ndata:second\ndata:  third\n\n") == [
        ServerSentEvent("status", "first\nsecond\n third")]  # one leading space dropped, not two


def test_sse_comments_are_skipped_and_ids_carry_over():
    events = _parse(": keepalive\n\nid: 7\nevent: progress\ndata: a\n\n: keepalive\ndata: b\n\n")
    assert events == [ServerSentEvent("progress", "a", "7"), ServerSentEvent("message", "b", "7")]


def test_sse_events_without_data_and_unterminated_events_are_dropped():
    assert _parse("event: status\n\nid: 3\n\ndata: last") == []


def test_sse_carriage_returns_and_unknown_fields():
    events = list(parse_sse(["retry: 10\r", "event: end\r", "data: {}\r", "", "data\r", "nonsense: 1", ""]))
    assert events == [ServerSentEvent("end", "{}"), ServerSentEvent("message", "")]


def test_connection_failed_says_what_broke():
    error = ConnectionFailed("http://h:1", httpx.ReadError("reset by peer"))
    assert str(error) == "lost the connection to http://h:1: reset by peer"


def test_individual_within_a_parameter_budget(api, client, make_task):
    _grow(api, client, make_task, n=1)
    support = make_task(["p", "q"], 3, seed=5)
    with pytest.raises(ApiError) as e:
        client.create_individual(support, init="learngene", max_parameters=5)
    assert e.value.status == 422 and e.value.type == "/problems/budget-too-small" and "parameters" in e.value.detail
    job = client.create_individual(support, init="learngene", epochs=1, max_parameters=20_000)
    api.run_jobs()
    ind = client.get_individual(client.get_job(job.id).result["individual_id"])
    assert ind.parameters <= 20_000 and ind.sizing["max_parameters"] == 20_000
