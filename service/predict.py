"""Predictions in the API process, with the few most used individual models kept loaded, run by a bounded
pool of threads that batches concurrent requests (`Predictor`), never on the request threads.

    models = ModelCache(store, size=8)
    predictions = await Predictor(models).predict(individual.weights_sha256, x)

Keyed by the weights' sha256, so an entry can never be stale: equal hash, equal model.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from service.artifacts import Store
from service.problems import Problem


class ModelCache:
    def __init__(self, store: Store, size: int = 8, on_first_load: Callable[[], None] | None = None) -> None:
        self.store, self.size = store, max(1, size)
        self._models: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()
        self._on_first_load = on_first_load  # e.g. torch thread settings, applied when torch is first needed
        self.hits = self.misses = 0  # GET /metrics

    def get(self, digest: str):
        from learngene import Individual  # torch is loaded on first use, not at API start

        with self._lock:
            if digest in self._models:
                self.hits += 1
                self._models.move_to_end(digest)
                return self._models[digest]
            self.misses += 1
        if self._on_first_load is not None:
            self._on_first_load()
            self._on_first_load = None
        model = Individual.from_bytes(self.store.get(digest))  # outside the lock: loading takes a while
        with self._lock:
            self._models[digest] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return model


@dataclass
class _Request:
    digest: str
    images: np.ndarray
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


class Predictor:
    """Predictions off the API's request threads: a bounded queue served by a few threads that batch
    concurrent requests for the same model into one forward pass (dynamic batching, as BentoML and TorchServe
    do). A request beyond `max_queue` waiting ones is refused at once with 503 and Retry-After.

        predictor = Predictor(models, threads=1, max_queue=64, max_batch=256, wait_s=0.0)
        predictions = await predictor.predict(individual.weights_sha256, images)
    """

    def __init__(self, models: ModelCache, threads: int = 1, max_queue: int = 64, max_batch: int = 256,
                 wait_s: float = 0.0, batching: bool = True) -> None:
        self.models, self.max_batch, self.wait_s, self.batching = models, max_batch, wait_s, batching
        self._queue: queue.Queue[_Request | None] = queue.Queue(maxsize=max_queue)
        self._threads = [threading.Thread(target=self._serve, name=f"predict-{i}", daemon=True)
                         for i in range(threads)]
        self._started = False
        self._lock = threading.Lock()
        self.batches = 0  # forward passes run (tests and benchmarks compare it with requests)
        self.taken = 0  # requests taken off the queue

    async def predict(self, digest: str, images: np.ndarray) -> list[dict]:
        self._start()
        loop = asyncio.get_running_loop()
        request = _Request(digest, images, loop, loop.create_future())
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            raise Problem(503, "Predictions busy", f"{self._queue.maxsize} prediction requests are waiting; retry "
                          "shortly", type="predictions-busy", headers={"Retry-After": "1"}) from None
        return await request.future

    def _start(self) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                for t in self._threads:
                    t.start()

    def _serve(self) -> None:
        while (first := self._queue.get()) is not None:
            self.taken += 1
            batch = [first]
            if self.batching:
                self._gather(batch)
            groups: dict[tuple, list[_Request]] = {}
            for r in batch:  # one forward pass per model and image shape
                groups.setdefault((r.digest, r.images.shape[1:]), []).append(r)
            for group in groups.values():
                self._run(group)

    def _gather(self, batch: list[_Request]) -> None:
        """Add the requests waiting now or arriving within `wait_s`, up to `max_batch` images. With `wait_s` 0
        a lone request runs at once, and under load each pass takes all that queued during the last one."""
        deadline, count = time.monotonic() + self.wait_s, len(batch[0].images)
        while count < self.max_batch:
            try:
                nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            if nxt is None:
                self._queue.put(None)  # keep the stop signal for the loop
                return
            self.taken += 1
            batch.append(nxt)
            count += len(nxt.images)

    def _run(self, group: list[_Request]) -> None:
        try:
            model = self.models.get(group[0].digest)
            out = model.predict(np.concatenate([r.images for r in group]) if len(group) > 1 else group[0].images)
            self.batches += 1
        except Exception as e:  # noqa: BLE001 - every request of the batch gets the error
            for r in group:
                r.loop.call_soon_threadsafe(_settle, r.future, None, e)
            return
        start = 0
        for r in group:
            r.loop.call_soon_threadsafe(_settle, r.future, out[start:start + len(r.images)], None)
            start += len(r.images)

    def close(self) -> None:
        if self._started:
            for _ in self._threads:
                try:
                    self._queue.put(None, timeout=1)
                except queue.Full:
                    break


def _settle(future: asyncio.Future, result, error: BaseException | None) -> None:
    if future.done():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
