"""Plots as PNG images of what the registry holds (open, like every GET).

    GET /learngenes/{id}/heatmap.png                         gradient statistics, chosen block, stability
    GET /learngenes/{id}/sizes.png                           eval accuracy against parameters, one line per init
    GET /collectives/{name}/versions/{number}/accuracy.png   accuracy matrix of a version
    GET /collectives/{name}/parameters.png                   parameter count per version (growth)
    GET /individuals/{id}/curve.png                          loss and accuracy per epoch

Rows of learngenes, versions and individuals never change, so a rendered PNG is kept in a small
in-process LRU and sent with an ETag (If-None-Match → 304). The parameters plot changes when the
collective grows: its key and ETag include the head version.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from sqlalchemy import select

from service import plots
from service.deps import MAX_ID, CollectiveName, RowId, SessionDep
from service.models import CollectiveVersion, Individual, Learngene
from service.problems import ProblemDetail, not_found
from service.registry import collective_by_name, get_or_404, task_names_by_version, task_names_up_to

router = APIRouter(tags=["plots"])
PNG_RESPONSES = {200: {"content": {"image/png": {}}, "description": "PNG image"}, 404: {"model": ProblemDetail}}
STYLE = "1"  # part of every ETag: bump it when a plot's look changes, so clients fetch the new one
IMMUTABLE = "public, max-age=86400"  # the row behind the image never changes
REVALIDATE = "no-cache"  # may change (the collective grows): ask every time, the ETag makes it cheap
VersionNumber = Annotated[int, Path(ge=1, le=MAX_ID)]


class PngCache:
    """A thread-safe LRU of rendered PNGs by key. Rendering happens outside the lock: two requests for
    the same new key may both render once; the bytes are the same."""

    def __init__(self, size: int = 128) -> None:
        self.size = size
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_render(self, key: str, render: Callable[[], bytes]) -> bytes:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        png = render()
        with self._lock:
            self._items[key] = png
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return png

    def __len__(self) -> int:
        return len(self._items)


def _png(request: Request, key: str, render: Callable[[], bytes], cache_control: str) -> Response:
    # The key names the registry content (ids and weight hashes), so its hash is a sound ETag without rendering.
    etag = '"' + hashlib.sha256(f"{STYLE}:{key}".encode()).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": cache_control}
    if etag in [t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    cache: PngCache = request.app.state.plot_cache
    return Response(cache.get_or_render(key, render), media_type="image/png", headers=headers)


def _version(session, name: str, number: int) -> CollectiveVersion:
    collective = collective_by_name(session, name)
    if collective is None:
        raise not_found("collective", repr(name))
    version = session.scalars(select(CollectiveVersion).where(CollectiveVersion.collective_id == collective.id,
                                                              CollectiveVersion.number == number)).first()
    if version is None:
        raise not_found(f"version of collective {name!r}", number)
    return version


@router.get("/learngenes/{learngene_id}/heatmap.png", response_class=Response, responses=PNG_RESPONSES,
            summary="Learngene heatmap (PNG)")
def learngene_heatmap(learngene_id: RowId, session: SessionDep, request: Request) -> Response:
    """Gradient statistics per layer and task, the chosen block and the stability scores, as a PNG (ETag,
    cached a day: the row never changes)."""
    lg = get_or_404(session, Learngene, learngene_id, "learngene")
    version = lg.collective_version
    stats = lg.grad_stats or {}
    args = dict(share=stats.get("share", []), relative=stats.get("relative"), scores=lg.scores, chosen=lg.layers,
                task_names=task_names_up_to(session, version), layer_names=(lg.info or {}).get("layer_names"),
                title=f"learngene {lg.id}: {version.collective.name} v{version.number} ({lg.method})")
    session.close()  # free the connection while rendering
    return _png(request, f"heatmap:{lg.id}:{lg.weights_sha256}", lambda: plots.gradient_heatmap(**args), IMMUTABLE)


@router.get("/learngenes/{learngene_id}/sizes.png", response_class=Response, responses=PNG_RESPONSES,
            summary="Size curve of a learngene (PNG)")
def learngene_sizes(learngene_id: RowId, session: SessionDep, request: Request) -> Response:
    """Eval accuracy against parameters of the individuals built from this learngene (its scratch twins too),
    one line per init; individuals without an eval set are left out. Changes as individuals arrive: ETag
    revalidated on every request."""
    lg = get_or_404(session, Learngene, learngene_id, "learngene")
    rows = session.execute(select(Individual.id, Individual.init, Individual.parameters, Individual.metrics)
                           .where(Individual.learngene_id == lg.id).order_by(Individual.id)).all()
    points: dict[str, list[tuple[int, float]]] = {}
    for _id, init, parameters, metrics in rows:
        if (metrics or {}).get("eval_accuracy") is not None:
            points.setdefault(init, []).append((parameters, float(metrics["eval_accuracy"])))
    # Individual rows never change; they come and go: the key names which exist.
    key = f"sizes:{lg.id}:" + hashlib.sha256(",".join(str(r[0]) for r in rows).encode()).hexdigest()[:16]
    title = f"learngene {lg.id}: eval accuracy against size"
    session.close()
    return _png(request, key, lambda: plots.size_curve(points, title=title), REVALIDATE)


@router.get("/collectives/{name}/versions/{number}/accuracy.png", response_class=Response,
            responses=PNG_RESPONSES, summary="Accuracy matrix of a version (PNG)")
def version_accuracy(name: CollectiveName, number: VersionNumber, session: SessionDep, request: Request) -> Response:
    """Accuracy on every task seen so far after each growth step, up to this version, as a PNG."""
    version = _version(session, name, number)
    args = dict(matrix=version.accuracy_matrix, task_names=task_names_up_to(session, version),
                title=f"accuracy matrix: {name} v{number}")
    session.close()
    return _png(request, f"accuracy:{version.id}:{version.weights_sha256}",
                lambda: plots.accuracy_matrix(**args), IMMUTABLE)


@router.get("/collectives/{name}/parameters.png", response_class=Response, responses=PNG_RESPONSES,
            summary="Parameters per version (PNG)")
def collective_parameters(name: CollectiveName, session: SessionDep, request: Request) -> Response:
    """How the collective grew: parameter count per version, as a PNG (revalidated: it changes as it grows)."""
    collective = collective_by_name(session, name)
    if collective is None:
        raise not_found("collective", repr(name))
    versions = list(collective.versions)
    names = task_names_by_version(session, collective.id)
    args = dict(numbers=[v.number for v in versions], parameters=[v.parameters for v in versions],
                task_names=[names.get(v.number) for v in versions], title=f"parameters per version: {name}")
    head = f"{versions[-1].number}:{versions[-1].weights_sha256}" if versions else "none"
    session.close()
    return _png(request, f"parameters:{collective.id}:{head}", lambda: plots.parameters_over_versions(**args),
                REVALIDATE)


@router.get("/individuals/{individual_id}/curve.png", response_class=Response, responses=PNG_RESPONSES,
            summary="Training curve of an individual (PNG)")
def individual_curve(individual_id: RowId, session: SessionDep, request: Request) -> Response:
    """Loss and accuracy per epoch of an individual's training, and its held-out accuracy, as a PNG."""
    ind = get_or_404(session, Individual, individual_id, "individual")
    metrics = ind.metrics or {}
    args = dict(history=metrics.get("history") or [], eval_accuracy=metrics.get("eval_accuracy"),
                title=f"individual {ind.id}: {len(ind.classes)}-way, "
                      + ("scratch" if ind.init == "scratch" else f"learngene {ind.learngene_id}"))
    session.close()
    return _png(request, f"curve:{ind.id}:{ind.weights_sha256}", lambda: plots.training_curve(**args), IMMUTABLE)
