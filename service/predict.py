"""Predictions in the API process, with the few most used individual models kept loaded.

    models = ModelCache(store, size=8)
    predictions = models.get(individual.weights_sha256).predict(x)

Keyed by the weights' sha256, so an entry can never be stale: equal hash, equal model.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from service.artifacts import ArtifactStore


class ModelCache:
    def __init__(self, store: ArtifactStore, size: int = 8, on_first_load: Callable[[], None] | None = None) -> None:
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
