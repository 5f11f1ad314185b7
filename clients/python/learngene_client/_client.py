"""The synchronous client: one method per endpoint of the Learngene service, typed results.

    client = Client("http://127.0.0.1:8000", api_key="lgk_...")
    job = client.create_task("task1.npz", name="pets", epochs=10)
    job = client.wait(job, on_progress=lambda j: print(j.status, j.progress.fraction))
"""
from __future__ import annotations

import os
import time
from contextlib import closing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from learngene_client._errors import ApiError, ConnectionFailed
from learngene_client._events import JobEvent, parse_sse
from learngene_client.models import (
    AliasPublic,
    CollectivePublic,
    IndividualPublic,
    JobPublic,
    LearngeneDetail,
    LearngenePublic,
    Page,
    PredictionsPublic,
    Readiness,
    TaskPublic,
)

DEFAULT_URL = "http://127.0.0.1:8000"
FINAL = frozenset({"succeeded", "failed", "cancelled"})
MAX_POLL_S = 5.0  # the longest wait between two polls, whatever Retry-After says
# A read timeout well above the server's 15 s keepalive: a stream that stays silent longer is broken.
STREAM_READ_S = 60.0

# What an upload may be: a path, raw bytes (sent as `data.npz`), or (filename, bytes).
FileInput = str | os.PathLike[str] | bytes | tuple[str, bytes]
M = TypeVar("M", bound=BaseModel)


def _file(value: FileInput, default_name: str = "data.npz") -> tuple[str, bytes]:
    if isinstance(value, tuple):
        return value
    if isinstance(value, bytes):
        return default_name, value
    path = Path(value)
    return path.name, path.read_bytes()


def _params(**values: Any) -> dict[str, Any]:
    """Query or form fields, without the ones left unset."""
    return {k: v for k, v in values.items() if v is not None}


class Client:
    """A client of one Learngene service.

        with Client() as client:                          # LEARNGENE_URL, LEARNGENE_API_KEY
            for lg in client.list_learngenes(collective="default").items: print(lg.id, lg.layers)

    `url` and `api_key` default to the environment (LEARNGENE_URL, else http://127.0.0.1:8000;
    LEARNGENE_API_KEY). `http` replaces the underlying httpx.Client (tests pass FastAPI's TestClient);
    its base URL is then used. Errors: ApiError (the service said no), ConnectionFailed (no answer).
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 timeout: float | httpx.Timeout = 60.0, http: httpx.Client | None = None) -> None:
        self.api_key = api_key if api_key is not None else os.environ.get("LEARNGENE_API_KEY") or None
        if http is None:
            url = (url or os.environ.get("LEARNGENE_URL") or DEFAULT_URL).rstrip("/")
            http = httpx.Client(base_url=url, timeout=timeout)
            self._owns_http = True
        else:
            self._owns_http = False
        self.http = http
        self.url = str(http.base_url).rstrip("/")

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --------------------------------------------------------------------------------------- plumbing

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return {**headers, **(extra or {})}

    def _request(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:
        """Send a request; a 4xx/5xx (other than those in `ok`) raises ApiError, no answer ConnectionFailed."""
        kwargs["headers"] = self._headers(kwargs.get("headers"))
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise ConnectionFailed(self.url, e) from e
        if response.is_error and response.status_code not in ok:
            raise ApiError.from_response(response)
        return response

    def _get(self, path: str, model: type[M], **params: Any) -> M:
        return model.model_validate_json(self._request("GET", path, params=_params(**params)).content)

    # --------------------------------------------------------------------------------------- health

    def health(self) -> dict[str, str]:
        """GET /healthz: {"status": "ok"} while the service answers."""
        return self._request("GET", "/healthz").json()

    def ready(self) -> Readiness:
        """GET /readyz: database, broker and worker checks (a 503 is returned as a Readiness, not raised)."""
        return Readiness.model_validate_json(self._request("GET", "/readyz", ok=(503,)).content)

    # --------------------------------------------------------------------------------------- collectives

    def list_collectives(self) -> list[CollectivePublic]:
        return TypeAdapter(list[CollectivePublic]).validate_json(self._request("GET", "/collectives").content)

    def get_collective(self, name: str) -> CollectivePublic:
        return self._get(f"/collectives/{name}", CollectivePublic)

    def create_collective(self, name: str, channels: int, size: int, *, preset: str = "small",
                          seed: int = 0) -> CollectivePublic:
        """POST /collectives: fix a collective's input spec (and preset, seed) before its first task."""
        body = {"name": name, "channels": channels, "size": size, "preset": preset, "seed": seed}
        return CollectivePublic.model_validate_json(self._request("POST", "/collectives", json=body).content)

    # --------------------------------------------------------------------------------------- tasks

    def create_task(self, file: FileInput, *, name: str | None = None, collective: str | None = None,
                    epochs: int | None = None, idempotency_key: str | None = None) -> JobPublic:
        """POST /tasks: upload a labelled dataset (.npz or .zip) that grows a collective; returns its job."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = self._request("POST", "/tasks", files={"file": _file(file)}, headers=headers,
                                 data=_params(name=name, collective=collective, epochs=epochs))
        return JobPublic.model_validate_json(response.content)

    def list_tasks(self, *, collective: str | None = None, status: str | None = None, limit: int | None = None,
                   cursor: str | None = None) -> Page[TaskPublic]:
        return self._get("/tasks", Page[TaskPublic], collective=collective, status=status, limit=limit,
                         cursor=cursor)

    def get_task(self, task_id: int) -> TaskPublic:
        return self._get(f"/tasks/{task_id}", TaskPublic)

    # --------------------------------------------------------------------------------------- learngenes

    def list_learngenes(self, *, collective: str | None = None, collective_version: int | None = None,
                        method: str | None = None, max_parameters: int | None = None, limit: int | None = None,
                        cursor: str | None = None) -> Page[LearngenePublic]:
        return self._get("/learngenes", Page[LearngenePublic], collective=collective,
                         collective_version=collective_version, method=method, max_parameters=max_parameters,
                         limit=limit, cursor=cursor)

    def get_learngene(self, learngene_id: int) -> LearngeneDetail:
        return self._get(f"/learngenes/{learngene_id}", LearngeneDetail)

    def learngene_weights(self, learngene_id: int, *, card: bool = False) -> bytes:
        """GET /learngenes/{id}/weights: safetensors bytes (`safetensors.torch.load(...)`); `card` adds the
        model card's metadata to the header (`model_card`)."""
        return self._request("GET", f"/learngenes/{learngene_id}/weights", params=_params(card=card or None)).content

    def learngene_card(self, learngene_id: int) -> str:
        """GET /learngenes/{id}/card: the model card (Markdown with YAML front matter)."""
        return self._request("GET", f"/learngenes/{learngene_id}/card").text

    def set_alias(self, name: str, learngene_id: int) -> AliasPublic:
        """PUT /learngenes/aliases/{name}: point `name` (e.g. `champion`) at a learngene (moves it if it exists)."""
        response = self._request("PUT", f"/learngenes/aliases/{name}", json={"learngene_id": learngene_id})
        return AliasPublic.model_validate_json(response.content)

    def get_alias(self, name: str) -> AliasPublic:
        return self._get(f"/learngenes/aliases/{name}", AliasPublic)

    def delete_alias(self, name: str) -> None:
        self._request("DELETE", f"/learngenes/aliases/{name}")

    # --------------------------------------------------------------------------------------- individuals

    def create_individual(self, support: FileInput, *, eval_file: FileInput | None = None,
                          learngene_id: int | None = None, learngene_alias: str | None = None,
                          init: str | None = None, epochs: int | None = None,
                          seed: int | None = None, lr: float | None = None, anchor: float | None = None,
                          distill: float | None = None, max_parameters: int | None = None,
                          idempotency_key: str | None = None) -> JobPublic:
        """POST /individuals: train a few-shot model on `support` (newest learngene by default); returns its job.

        `learngene_alias` names the learngene by alias (`champion`) instead of by id; `max_parameters` builds the
        largest model of the learngene's family within that many parameters (too small: a 422 whose
        `smallest_budget` says the least that works)."""
        files = {"file": _file(support, "support.npz")}
        if eval_file is not None:
            files["eval_file"] = _file(eval_file, "eval.npz")
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        form = _params(learngene_id=learngene_id, learngene_alias=learngene_alias, init=init, epochs=epochs,
                       seed=seed, lr=lr, anchor=anchor, distill=distill, max_parameters=max_parameters)
        response = self._request("POST", "/individuals", files=files, data=form, headers=headers)
        return JobPublic.model_validate_json(response.content)

    def list_individuals(self, *, learngene_id: int | None = None, limit: int | None = None,
                         cursor: str | None = None) -> Page[IndividualPublic]:
        return self._get("/individuals", Page[IndividualPublic], learngene_id=learngene_id, limit=limit,
                         cursor=cursor)

    def get_individual(self, individual_id: int) -> IndividualPublic:
        return self._get(f"/individuals/{individual_id}", IndividualPublic)

    def predict(self, individual_id: int, file: FileInput) -> PredictionsPublic:
        """POST /individuals/{id}/predictions: an .npz with `x`, or one image file; predictions in input order."""
        response = self._request("POST", f"/individuals/{individual_id}/predictions",
                                 files={"file": _file(file, "images.npz")})
        return PredictionsPublic.model_validate_json(response.content)

    def individual_weights(self, individual_id: int, *, card: bool = False) -> bytes:
        """GET /individuals/{id}/weights: safetensors bytes; `card` adds the model card's metadata to the header."""
        return self._request("GET", f"/individuals/{individual_id}/weights", params=_params(card=card or None)).content

    def individual_onnx(self, individual_id: int) -> bytes:
        """GET /individuals/{id}/model.onnx: input `images` float32 (N, C, S, S) = uint8/127.5 - 1, output
        `probabilities` (N, classes); metadata class_names, channels, size."""
        return self._request("GET", f"/individuals/{individual_id}/model.onnx").content

    def individual_card(self, individual_id: int) -> str:
        """GET /individuals/{id}/card: the model card (Markdown with YAML front matter)."""
        return self._request("GET", f"/individuals/{individual_id}/card").text

    def delete_individual(self, individual_id: int) -> None:
        """DELETE /individuals/{id} (write key): the model and its weights; its id then answers 404."""
        self._request("DELETE", f"/individuals/{individual_id}")

    # --------------------------------------------------------------------------------------- jobs

    def list_jobs(self, *, status: str | None = None, kind: str | None = None, limit: int | None = None,
                  cursor: str | None = None) -> Page[JobPublic]:
        return self._get("/jobs", Page[JobPublic], status=status, kind=kind, limit=limit, cursor=cursor)

    def get_job(self, job_id: int) -> JobPublic:
        """GET /jobs/{id}."""
        return self._get(f"/jobs/{job_id}", JobPublic)

    def cancel_job(self, job_id: int) -> JobPublic:
        """POST /jobs/{id}/cancel: a queued job is cancelled at once, a running one at its next step."""
        return JobPublic.model_validate_json(self._request("POST", f"/jobs/{job_id}/cancel").content)

    def job_events(self, job_id: int, *, read_timeout: float = STREAM_READ_S) -> Iterator[JobEvent]:
        """GET /jobs/{id}/events: the job now, then every change, ending with an `end` event.

            for e in client.job_events(3): print(e.event, e.job.status, e.job.progress.fraction)
        """
        timeout = httpx.Timeout(self.http.timeout.connect, read=read_timeout, write=self.http.timeout.write,
                                pool=self.http.timeout.pool)
        try:
            with self.http.stream("GET", f"/jobs/{job_id}/events", headers=self._headers(
                    {"Accept": "text/event-stream"}), timeout=timeout) as response:
                if response.is_error:
                    response.read()
                    raise ApiError.from_response(response)
                for sse in parse_sse(response.iter_lines()):
                    if sse.event in ("status", "progress", "end"):
                        yield JobEvent(sse.event, JobPublic.model_validate_json(sse.data), sse.id)
        except httpx.TransportError as e:
            raise ConnectionFailed(self.url, e) from e

    def wait(self, job: JobPublic | int, *, on_progress: Callable[[JobPublic], None] | None = None,
             timeout: float | None = None) -> JobPublic:
        """Follow a job until it is final and return it (a failed or cancelled job is returned, not raised).

            job = client.wait(client.create_task("t.npz"), on_progress=lambda j: print(j.progress.stage))

        Follows the event stream, calling `on_progress(job)` on each event. If the server has no events
        endpoint, or the stream breaks, it polls GET /jobs/{id} instead (honouring Retry-After, at most
        every 5 s), calling `on_progress` whenever status or progress changed. `timeout` (seconds) raises
        TimeoutError when the job is not final by then.
        """
        job_id = job.id if isinstance(job, JobPublic) else int(job)
        deadline = None if timeout is None else time.monotonic() + timeout
        last: JobPublic | None = None
        try:
            read_timeout = STREAM_READ_S if deadline is None else max(0.1, min(STREAM_READ_S, timeout))
            with closing(self.job_events(job_id, read_timeout=read_timeout)) as events:
                for event in events:
                    last = event.job
                    if on_progress is not None:
                        on_progress(event.job)
                    if event.event == "end":
                        return event.job
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError(f"job {job_id} is still {event.job.status} after {timeout:g} s")
        except ApiError as e:
            if e.status != 404:
                raise
            self.get_job(job_id)  # an older server without the endpoint, if the job exists: else this 404 raises
        except ConnectionFailed:
            pass  # the stream broke (a proxy, a restart): polling picks up from the job's current state
        return self._poll(job_id, on_progress, deadline, timeout, last)

    def _poll(self, job_id: int, on_progress: Callable[[JobPublic], None] | None, deadline: float | None,
              timeout: float | None, last: JobPublic | None) -> JobPublic:
        while True:
            response = self._request("GET", f"/jobs/{job_id}")
            job = JobPublic.model_validate_json(response.content)
            changed = last is None or (job.status, job.progress) != (last.status, last.progress)
            if changed and on_progress is not None:
                on_progress(job)
            last = job
            if job.status in FINAL:
                return job
            pause = _retry_after(response)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"job {job_id} is still {job.status} after {timeout:g} s")
                pause = min(pause, left)
            time.sleep(pause)


def _retry_after(response: httpx.Response) -> float:
    """The server's Retry-After in seconds (1 s when absent or unreadable), capped at MAX_POLL_S."""
    try:
        seconds = float(response.headers.get("Retry-After", "1"))
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.1), MAX_POLL_S)
