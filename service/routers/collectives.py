"""Collectives: the growing networks, each a chain of versions (one per learned task).

    POST /collectives          {"name": "rgb", "channels": 3, "size": 32}   fix a spec before the first task
    GET  /collectives          all, with their head version number
    GET  /collectives/{name}   one, with every version
"""
from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service.auth import WRITE
from service.db import SessionDep
from service.deps import CollectiveName
from service.models import Collective, Learngene, Task
from service.problems import Problem, ProblemDetail, not_found
from service.registry import collective_by_name
from service.schemas import CollectiveCreate, CollectivePublic, CollectiveVersionPublic

router = APIRouter(prefix="/collectives", tags=["collectives"])


def collective_public(session, c: Collective, with_versions: bool = True) -> CollectivePublic:
    versions = list(c.versions)
    out = CollectivePublic(id=c.id, name=c.name, channels=c.channels, size=c.size, preset=c.preset, seed=c.seed,
                           created_at=c.created_at, head=versions[-1].number if versions else None)
    if not with_versions or not versions:
        return out
    ids = [v.id for v in versions]
    numbers = {v.id: v.number for v in versions}
    tasks = dict(session.execute(select(Task.collective_version_id, Task.id)
                                 .where(Task.collective_version_id.in_(ids))).all())
    genes = dict(session.execute(select(Learngene.collective_version_id, Learngene.id)
                                 .where(Learngene.collective_version_id.in_(ids)).order_by(Learngene.id)).all())
    out.versions = [
        CollectiveVersionPublic(
            number=v.number, parent=numbers.get(v.parent_id), widths=v.widths, parameters=v.parameters,
            label_space=v.label_space, accuracy_matrix=v.accuracy_matrix, threshold=v.threshold,
            task_id=tasks.get(v.id), learngene_id=genes.get(v.id), created_at=v.created_at,
        )
        for v in versions
    ]
    return out


@router.post("", status_code=201, response_model=CollectivePublic, dependencies=[WRITE], summary="Create a collective",
             responses={401: {"model": ProblemDetail}, 403: {"model": ProblemDetail}, 409: {"model": ProblemDetail},
                        422: {"model": ProblemDetail}})
def create_collective(body: CollectiveCreate, session: SessionDep, response: Response) -> CollectivePublic:
    """Fix a collective's input spec (channels, image size) and starting preset before its first task. Without
    this, the first `POST /tasks` naming a new collective creates it from the uploaded data. Needs a write key;
    409 if the name is taken."""
    exists = Problem(409, "Collective exists", f"a collective named {body.name!r} already exists",
                     type="collective-exists")
    if collective_by_name(session, body.name) is not None:
        raise exists
    c = Collective(**body.model_dump())
    session.add(c)
    try:
        session.commit()
    except IntegrityError as e:  # created by a concurrent request (or the first upload) just now
        raise exists from e
    response.headers["Location"] = f"/collectives/{c.name}"
    return collective_public(session, c)


@router.get("", response_model=list[CollectivePublic], summary="List collectives")
def list_collectives(session: SessionDep) -> list[CollectivePublic]:
    """Every collective, oldest first, with its head version number (without the versions themselves)."""
    rows = session.scalars(select(Collective).order_by(Collective.id)).all()
    return [collective_public(session, c, with_versions=False) for c in rows]


@router.get("/{name}", response_model=CollectivePublic, responses={404: {"model": ProblemDetail}},
            summary="Get a collective")
def get_collective(name: CollectiveName, session: SessionDep) -> CollectivePublic:
    """One collective with every version: widths, parameters, label space, accuracy matrix, and the task and
    learngene of each."""
    c = collective_by_name(session, name)
    if c is None:
        raise not_found("collective", repr(name))
    return collective_public(session, c)

