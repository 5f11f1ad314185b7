"""Server-sent events for one job: its state on connect, each change of status or progress, then `end`.

    GET /jobs/{id}/events                           (service/routers/jobs.py)
    EventStream(signals.held(job_events(first, load, disconnected, signals.waiter(job_id))))

Events (every `data:` is the job's JobPublic JSON; every `id:` is the job's revision, raised by each change):
    status     on connect, and whenever the status changes (queued → running → succeeded ...)
    progress   the progress changed (stage, epoch, loss, fraction), the status did not
    end        the job is final; the stream closes after it
A client reconnecting with `Last-Event-ID` (browsers do) is not sent again the state it already has.

How a stream learns of a change (`JobSignals`):
- Redis broker (production): every committed change of a job is published on a Redis channel
  (service/jobstate.notify_on_commit, from the API and the workers); one subscriber thread per API process
  wakes the streams of that job, which then read it once. A slow fallback poll covers a lost message.
- embedded default (no pub/sub): each stream reads the job every `LEARNGENE_EVENTS_POLL_S`.
Progress written and overwritten between two reads is not seen: a client gets the latest state, not every
write. Open streams are capped (`LEARNGENE_MAX_EVENT_STREAMS`): one more is answered 503 with Retry-After.
A comment (`: keepalive`) after KEEPALIVE_S of silence keeps proxies from closing an idle connection.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from service.problems import Problem
from service.schemas import JobPublic
from service.settings import Settings

log = logging.getLogger("service.events")
KEEPALIVE_S = 15.0
FALLBACK_POLL_S = 5.0  # with pub/sub: read the job at least this often anyway
FINAL = frozenset({"succeeded", "failed", "cancelled"})
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no caching, no proxy buffering (nginx)
Snapshot = tuple[int, JobPublic]  # (revision, public view) of a job


# One event as the OpenAPI document describes it (OpenAPI 3.1: a text/event-stream `schema` is one event).
JOB_EVENT_SCHEMA = {
    "type": "object",
    "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "the job's revision: increases with every change; send the last one back as Last-Event-ID to resume"},
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


async def job_events(first: Snapshot, load: Callable[[], Snapshot | None],
                     is_disconnected: Callable[[], Awaitable[bool]], wait: Callable[[], Awaitable[None]],
                     keepalive_s: float = KEEPALIVE_S, last_event_id: int | None = None) -> AsyncIterator[str]:
    """The event stream of a job whose current state is `first`; `wait()` returns when it may have changed,
    `load()` reads it again (None: gone)."""

    def event(name: str, snapshot: Snapshot) -> str:
        return format_event(name, snapshot[1].model_dump_json(), snapshot[0])

    if first[0] != last_event_id:
        yield event("status", first)
    last, quiet_since = first, time.monotonic()
    while last[1].status not in FINAL:
        await wait()
        if await is_disconnected():
            return
        snapshot = await run_in_threadpool(load)
        if snapshot is None:  # the row is gone (nothing deletes jobs today): nothing more to say
            return
        job, before = snapshot[1], last[1]
        if job.status != before.status:
            yield event("status", snapshot)
        elif job.progress != before.progress:
            yield event("progress", snapshot)
        elif time.monotonic() - quiet_since >= keepalive_s:
            yield ": keepalive\n\n"
        else:
            last = snapshot  # e.g. a cancel was asked for: nothing the events show
            continue
        last, quiet_since = snapshot, time.monotonic()
    yield event("end", last)


def channel_prefix(settings: Settings) -> str:
    return f"{settings.redis_key_prefix}learngene:job-changed:"


class JobPublisher:
    """Announces a job change on Redis (installed with jobstate.notify_on_commit where the broker is Redis)."""

    def __init__(self, settings: Settings) -> None:
        import redis

        self.client = redis.Redis.from_url(settings.broker, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = channel_prefix(settings)

    def __call__(self, job_id: int) -> None:
        self.client.publish(f"{self.prefix}{job_id}", b"1")


def install_publisher(sessions, settings: Settings) -> None:
    """Make every committed job change of `sessions` wake the event streams (Redis broker only)."""
    if settings.broker.startswith(("redis://", "rediss://")):
        from service import jobstate

        jobstate.notify_on_commit(sessions, JobPublisher(settings))


class JobSignals:
    """Wakes the event streams of this API process: pub/sub with a Redis broker, a poll timer otherwise;
    and counts open streams against the cap."""

    def __init__(self, settings: Settings) -> None:
        self.poll_s, self.max_streams = settings.events_poll_s, settings.max_event_streams
        self.redis_url = settings.broker if settings.broker.startswith(("redis://", "rediss://")) else None
        self.prefix = channel_prefix(settings)
        self.open = 0
        self._lock = threading.Lock()
        self._waiters: dict[int, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._listener: threading.Thread | None = None
        self._stopped = threading.Event()

    def held(self, stream: AsyncIterator[str]) -> AsyncIterator[str]:
        """`stream`, counted as open from now until it ends; 503 with Retry-After (now) if the cap is reached."""
        with self._lock:
            if self.open >= self.max_streams:
                raise Problem(503, "Too many event streams", f"{self.max_streams} event streams are open; poll "
                              "GET /jobs/{id} or retry later", type="too-many-streams", headers={"Retry-After": "5"})
            self.open += 1
        return self._counted(stream)

    async def _counted(self, stream: AsyncIterator[str]) -> AsyncIterator[str]:
        try:
            async for chunk in stream:
                yield chunk
        finally:
            with self._lock:
                self.open -= 1

    def waiter(self, job_id: int) -> Callable[[], Awaitable[None]]:
        """What a stream of `job_id` awaits between two reads of the job."""
        if self.redis_url is None:
            return lambda: asyncio.sleep(self.poll_s)
        self._start_listener()

        async def wait() -> None:
            entry = (asyncio.get_running_loop(), asyncio.Event())
            with self._lock:
                self._waiters.setdefault(job_id, set()).add(entry)
            try:
                await asyncio.wait_for(entry[1].wait(), FALLBACK_POLL_S)
            except TimeoutError:
                pass
            finally:
                with self._lock:
                    self._waiters.get(job_id, set()).discard(entry)
                    if not self._waiters.get(job_id):
                        self._waiters.pop(job_id, None)

        return wait

    def _start_listener(self) -> None:
        with self._lock:
            if self._listener is None:
                self._listener = threading.Thread(target=self._listen, name="job-events", daemon=True)
                self._listener.start()

    def _listen(self) -> None:
        import redis

        while not self._stopped.is_set():
            try:
                pubsub = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2).pubsub()
                pubsub.psubscribe(f"{self.prefix}*")
                while not self._stopped.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message["type"] == "pmessage":
                        self._wake(int(message["channel"].decode().rsplit(":", 1)[1]))
                pubsub.close()
            except Exception as e:  # noqa: BLE001 - Redis restarting: streams poll slowly meanwhile
                log.warning("job events subscriber: %s; reconnecting", e)
                self._stopped.wait(1.0)

    def _wake(self, job_id: int) -> None:
        with self._lock:
            entries = list(self._waiters.get(job_id, ()))
        for loop, ev in entries:
            loop.call_soon_threadsafe(ev.set)

    def close(self) -> None:
        self._stopped.set()
