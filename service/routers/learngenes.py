"""The learngene catalog: one learngene per collective version, extracted automatically.

    GET /learngenes                 newest first; ?collective=&collective_version=&method=&max_parameters=
    GET /learngenes/{id}            layers, stability scores, gradient statistics, lineage
    GET /learngenes/{id}/weights    safetensors bytes

    curl 'http://127.0.0.1:8000/learngenes?collective=default&limit=10'
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select

from service.deps import MAX_ID, CollectiveFilter, RowId, SessionDep, StoreDep
from service.models import Collective, CollectiveVersion, Learngene, Task
from service.pagination import PageDep, paginate
from service.problems import ProblemDetail, not_found
from service.schemas import METHOD_PATTERN, LearngeneDetail, LearngenePublic, Lineage, Page
from service.cards import CardQuery, card_response, learngene_card
from service.routers.aliases import aliases_of
from service.weights import weights_response

router = APIRouter(prefix="/learngenes", tags=["learngenes"])
NOT_FOUND = {404: {"model": ProblemDetail}}


def _rows():
    return (select(Learngene, Collective.name, CollectiveVersion.number)
            .join(CollectiveVersion, Learngene.collective_version_id == CollectiveVersion.id)
            .join(Collective, CollectiveVersion.collective_id == Collective.id))


def learngene_public(row, aliases: list[str] | None = None) -> LearngenePublic:
    lg, collective, number = row
    return LearngenePublic(
        id=lg.id, collective=collective, collective_version=number, method=lg.method, layers=lg.layers,
        parameters=lg.parameters, scores=lg.scores, channels=lg.channels, size=lg.size, tags=lg.tags,
        aliases=aliases or [], created_at=lg.created_at,
    )


@router.get("", response_model=Page[LearngenePublic], summary="List learngenes")
def list_learngenes(
    session: SessionDep, page: PageDep,
    collective: CollectiveFilter = None,
    collective_version: Annotated[int | None, Query(ge=1, le=MAX_ID,
                                                   description="a version number of the collective")] = None,
    method: Annotated[str | None, Query(max_length=32, pattern=METHOD_PATTERN)] = None,
    max_parameters: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
) -> Page[LearngenePublic]:
    """The learngene catalog, newest first: one learngene per collective version, filtered by collective,
    version, extraction method or size; pages of `limit` rows, `next_cursor` for the next."""
    stmt = _rows()
    if collective is not None:
        stmt = stmt.where(Collective.name == collective)
    if collective_version is not None:
        stmt = stmt.where(CollectiveVersion.number == collective_version)
    if method is not None:
        stmt = stmt.where(Learngene.method == method)
    if max_parameters is not None:
        stmt = stmt.where(Learngene.parameters <= max_parameters)
    rows, cursor = paginate(session, stmt, Learngene.id, page)
    names = aliases_of(session, [r[0].id for r in rows])
    return Page[LearngenePublic](items=[learngene_public(r, names.get(r[0].id)) for r in rows], limit=page.limit,
                                 next_cursor=cursor)


def _get(session, learngene_id: int):
    row = session.execute(_rows().where(Learngene.id == learngene_id)).first()
    if row is None:
        raise not_found("learngene", learngene_id)
    return row


@router.get("/{learngene_id}", response_model=LearngeneDetail, responses=NOT_FOUND, summary="Get a learngene")
def get_learngene(learngene_id: RowId, session: SessionDep) -> LearngeneDetail:
    """Which layers were kept and why: per-layer stability scores, gradient statistics, the candidates
    compared, and the lineage (collective version, parent, the task that made it)."""
    row = _get(session, learngene_id)
    lg, collective, number = row
    version = lg.collective_version
    parent = session.get(CollectiveVersion, version.parent_id) if version.parent_id else None
    task = session.scalars(select(Task).where(Task.collective_version_id == version.id)).first()
    lineage = Lineage(
        collective=collective, collective_version=number, parent_version=parent.number if parent else None,
        task_id=task.id if task else None, task_name=task.name if task else None, tasks_seen=number,
    )
    return LearngeneDetail(
        **learngene_public(row, aliases_of(session, [lg.id]).get(lg.id)).model_dump(), grad_stats=lg.grad_stats,
        candidates=lg.candidates, sha256=lg.weights_sha256, lineage=lineage, info=lg.info, storage=storage_of(lg),
        links={"self": f"/learngenes/{lg.id}", "weights": f"/learngenes/{lg.id}/weights",
               "collective": f"/collectives/{collective}", "card": f"/learngenes/{lg.id}/card",
               "sizes": f"/learngenes/{lg.id}/sizes.png"},
    )


def storage_of(lg: Learngene) -> dict | None:
    """The storage view (learngene/sizing.py `storage_view`) from the row alone: the collective's widths are in
    its info (`source.widths`), so no artifact is read."""
    from learngene.model import NetConfig
    from learngene.sizing import storage_view

    widths = ((lg.info or {}).get("source") or {}).get("widths")
    if not widths:
        return None
    return storage_view(NetConfig(lg.channels, list(widths)), list(lg.layers), lg.parameters)


@router.get("/{learngene_id}/weights", response_class=Response, responses={
    200: {"content": {"application/octet-stream": {}}, "description": "safetensors"}, **NOT_FOUND},
            summary="Download a learngene's weights")
def get_learngene_weights(learngene_id: RowId, session: SessionDep, store: StoreDep, request: Request,
                          card: CardQuery = False) -> Response:
    """The inherited layers as a safetensors file, with an ETag (the sha256) for conditional requests; with
    ?card=true the model card's metadata is added to the safetensors header (`model_card`), as `learngene
    download` saves it."""
    lg = _get(session, learngene_id)[0]
    meta = learngene_card(session, store, lg).metadata if card else None
    return weights_response(store, lg.weights_sha256, f"learngene-{lg.id}.safetensors", request, card=meta)


@router.get("/{learngene_id}/card", response_class=Response, responses={
    200: {"content": {"text/markdown": {}}, "description": "model card: Markdown with YAML front matter"},
    **NOT_FOUND}, summary="A learngene's model card")
def get_learngene_card(learngene_id: RowId, session: SessionDep, store: StoreDep) -> Response:
    """The learngene's model card: base model (its collective version), tasks seen, the collective's training
    recipe, metrics with their protocol, parameters, input, library versions, sha256 of the weights."""
    return card_response(learngene_card(session, store, _get(session, learngene_id)[0]))
