"""GET /jobs/{id}/events: server-sent events of one job (status, progress, end), over the in-process app."""
from __future__ import annotations

import asyncio
import json
import threading

from learngene_client import parse_sse
from service.events import job_events
from service.models import Job
from service.schemas import JobProgress, JobPublic


def _revision(api, job_id: int) -> int:
    with api.ctx.sessions() as s:
        return s.get(Job, job_id).revision


def _stream(api, job_id: int, on_first=None) -> tuple[object, list]:
    """Read a job's event stream to its end; `on_first()` runs once the first event has arrived."""
    events = []
    with api.client.stream("GET", f"/jobs/{job_id}/events") as response:
        for event in parse_sse(response.iter_lines()):
            events.append(event)
            if len(events) == 1 and on_first is not None:
                on_first()
    return response, events


def test_a_finished_job_gives_its_state_then_end(api, make_task):
    job = api.post_task(make_task(["a", "b"], 4))
    api.run_jobs()
    with api.client.stream("GET", f"/jobs/{job['id']}/events") as response:
        raw = response.read().decode()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache" and response.headers["x-accel-buffering"] == "no"
    revision = _revision(api, job["id"])  # every event's id is the job's revision: what Last-Event-ID resumes from
    assert raw.startswith(f"id: {revision}\nevent: status\ndata: {{")
    events = list(parse_sse(raw.splitlines()))
    assert [(e.event, e.id) for e in events] == [("status", str(revision)), ("end", str(revision))]
    final = json.loads(events[-1].data)
    assert final == api.client.get(f"/jobs/{job['id']}").json()  # the whole JobPublic, as GET /jobs/{id}
    assert final["status"] == "succeeded" and final["result"]["collective_version"] == 1


def test_a_queued_job_streams_status_and_progress_until_it_ends(api, make_task):
    job = api.post_task(make_task(["a", "b", "c"], 12), epochs="25")
    worker = threading.Thread(target=api.run_jobs)
    # The job runs only once the stream has said `queued`, so the first status is known.
    response, events = _stream(api, job["id"], on_first=worker.start)
    worker.join(60)
    assert response.status_code == 200
    jobs = [JobPublic.model_validate_json(e.data) for e in events]
    statuses = [j.status for e, j in zip(events, jobs) if e.event == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    progress = [j.progress for e, j in zip(events, jobs) if e.event == "progress"]
    assert progress and all(p.stage for p in progress)
    assert [p.fraction for p in progress] == sorted(p.fraction for p in progress)  # never goes back
    assert any(p.epochs == 25 for p in progress)
    assert events[-1].event == "end" and jobs[-1].status == "succeeded" and jobs[-1].progress.fraction == 1.0
    ids = [int(e.id) for e in events]
    assert ids[:-1] == sorted(set(ids[:-1])) and ids[-1] == ids[-2] == _revision(api, job["id"])


def test_a_cancelled_job_ends_its_stream(api, make_task):
    job = api.post_task(make_task(["a", "b"], 4))
    response, events = _stream(api, job["id"], on_first=lambda: api.client.post(f"/jobs/{job['id']}/cancel"))
    assert [e.event for e in events] == ["status", "status", "end"]
    assert [json.loads(e.data)["status"] for e in events] == ["queued", "cancelled", "cancelled"]


def test_an_unknown_job_is_a_404_problem_before_any_stream(api):
    r = api.client.get("/jobs/999/events")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "job 999 does not exist" and r.json()["instance"] == "/jobs/999/events"


def test_the_events_route_is_documented_as_an_event_stream(api):
    operation = api.client.get("/openapi.json").json()["paths"]["/jobs/{job_id}/events"]["get"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert "application/problem+json" in operation["responses"]["404"]["content"]
    assert "security" not in operation  # a GET: open, like the others


def _job(status: str, fraction: float = 0.0) -> tuple[int, JobPublic]:
    return 1, JobPublic(id=1, kind="task", status=status, progress=JobProgress(fraction=fraction),
                        created_at="2024-01-01T00:00:00Z")


async def _collect(stream, limit: int = 20) -> list[str]:
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
        if len(chunks) == limit:
            break
    return chunks


def test_silence_sends_keepalive_comments_and_a_disconnect_stops_the_stream():
    loads = iter([_job("queued")] * 3)
    disconnected = iter([False, False, False, True])

    async def is_disconnected() -> bool:
        return next(disconnected)

    stream = job_events(_job("queued"), lambda: next(loads), is_disconnected, lambda: asyncio.sleep(0), keepalive_s=0)
    chunks = asyncio.run(_collect(stream))
    assert chunks[0].startswith("id: 1\nevent: status\n")
    assert chunks[1:] == [": keepalive\n\n"] * 3  # nothing changed: comments only; then the client left


def test_a_multi_line_data_value_is_one_data_line_each():
    from service.events import format_event

    wire = format_event("status", '{"a":\n1}', 7)
    assert wire == 'id: 7\nevent: status\ndata: {"a":\ndata: 1}\n\n'
    (event,) = parse_sse(wire.split("\n"))
    assert (event.event, event.data, event.id) == ("status", '{"a":\n1}', "7")


def test_a_client_resuming_with_last_event_id_is_not_sent_the_state_it_has(api, make_task):
    job = api.post_task(make_task(["a", "b"], 4))
    revision = _revision(api, job["id"])
    api.client.post(f"/jobs/{job['id']}/cancel")
    with api.client.stream("GET", f"/jobs/{job['id']}/events", headers={"Last-Event-ID": str(revision + 1)}) as r:
        resumed = list(parse_sse(r.iter_lines()))
    assert [(e.event, int(e.id)) for e in resumed] == [("end", revision + 1)]  # it had seen the cancel already
    with api.client.stream("GET", f"/jobs/{job['id']}/events", headers={"Last-Event-ID": str(revision)}) as r:
        behind = list(parse_sse(r.iter_lines()))
    assert [e.event for e in behind] == ["status", "end"]  # it had not: the new state, then the end


def test_event_streams_past_the_cap_are_refused_with_retry_after(api, make_task):
    job = api.post_task(make_task(["a", "b"], 4))
    signals = api.client.app.state.job_signals
    signals.open = signals.max_streams  # as many streams open as allowed
    try:
        r = api.client.get(f"/jobs/{job['id']}/events")
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json()["type"] == "/problems/too-many-streams"
    finally:
        signals.open = 0
    with api.client.stream("GET", f"/jobs/{job['id']}/events") as r:
        assert r.status_code == 200
        api.client.post(f"/jobs/{job['id']}/cancel")
        assert [e.event for e in parse_sse(r.iter_lines())][-1] == "end"
    assert signals.open == 0  # a finished stream gives its slot back
