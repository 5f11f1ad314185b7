"""Server-sent events for one job: its state on connect, each change of status or progress, then `end`.

    GET /jobs/{id}/events                           (service/routers/jobs.py)
    return EventStream(job_events(first, load, request.is_disconnected, poll_s=settings.events_poll_s))

Events (every `data:` is the job's JobPublic JSON, every event has an incrementing `id:`):
    status     on connect, and whenever the status changes (queued → running → succeeded ...)
    progress   the progress changed (stage, epoch, loss, fraction), the status did not
    end        the job is final; the stream closes after it

The embedded default has no pub/sub, so the stream polls the registry every `LEARNGENE_EVENTS_POLL_S`
(blocking queries, hence a threadpool). Progress written and overwritten between two polls is not seen:
a client gets the latest state, not every write. A comment (`: keepalive`) after KEEPALIVE_S of silence
keeps proxies from closing an idle connection while a job waits in the queue.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from service.schemas import JobPublic

KEEPALIVE_S = 15.0
FINAL = frozenset({"succeeded", "failed", "cancelled"})
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no caching, no proxy buffering (nginx)


# One event as the OpenAPI document describes it (OpenAPI 3.1: a text/event-stream `schema` is one event).
JOB_EVENT_SCHEMA = {
    "type": "object",
    "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "1, 2, 3, ... within one stream"},
        "event": {"type": "string", "enum": ["status", "progress", "end"]},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"$ref": "#/components/schemas/JobPublic"}, "description": "the job, as JSON"},
    },
}


class EventStream(StreamingResponse):
    """A `text/event-stream` response (also what the OpenAPI document declares for the route)."""

    media_type = "text/event-stream"


def format_event(event: str, data: str, event_id: int) -> str:
    """One event in the SSE wire format; a multi-line `data` becomes one `data:` line per line."""
    lines = [f"id: {event_id}", f"event: {event}", *(f"data: {line}" for line in data.split("\n"))]
    return "\n".join(lines) + "\n\n"


async def job_events(first: JobPublic, load: Callable[[], JobPublic | None],
                     is_disconnected: Callable[[], Awaitable[bool]], poll_s: float,
                     keepalive_s: float = KEEPALIVE_S) -> AsyncIterator[str]:
    """The event stream of a job whose current state is `first`; `load()` reads it again (None: gone)."""
    event_id = 0

    def event(name: str, job: JobPublic) -> str:
        nonlocal event_id
        event_id += 1
        return format_event(name, job.model_dump_json(), event_id)

    yield event("status", first)
    last, quiet_since = first, time.monotonic()
    while last.status not in FINAL:
        await asyncio.sleep(poll_s)
        if await is_disconnected():
            return
        job = await run_in_threadpool(load)
        if job is None:  # the row is gone (nothing deletes jobs today): nothing more to say
            return
        if job.status != last.status:
            yield event("status", job)
        elif job.progress != last.progress:
            yield event("progress", job)
        elif time.monotonic() - quiet_since >= keepalive_s:
            yield ": keepalive\n\n"
        else:
            continue
        last, quiet_since = job, time.monotonic()
    yield event("end", last)
