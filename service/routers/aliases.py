"""Learngene aliases: names (`champion`) that point at a learngene, as MLflow's registry aliases do.

    GET    /learngenes/aliases              every alias
    PUT    /learngenes/aliases/{name}       {"learngene_id": 3} (write key): set or move it; 200
    GET    /learngenes/aliases/{name}       which learngene it points at
    DELETE /learngenes/aliases/{name}       (write key) 204

    curl -X PUT -H 'Authorization: Bearer lgk_...' -H 'Content-Type: application/json' \
         -d '{"learngene_id": 3}' http://127.0.0.1:8000/learngenes/aliases/champion

A move is one transaction: the alias row and a LearngeneAliasEvent (from, to, which key) commit together.
POST /individuals takes `learngene_alias` instead of `learngene_id`; the catalog lists each learngene's aliases.
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.auth import WRITE
from service.deps import MAX_ID, SessionDep
from service.models import ApiKey, Learngene, LearngeneAlias, LearngeneAliasEvent, utcnow
from service.problems import Problem, ProblemDetail, not_found
from service.schemas import AliasPublic

router = APIRouter(prefix="/learngenes/aliases", tags=["learngenes"])
ERRORS = {code: {"model": ProblemDetail} for code in (401, 403, 404, 422)}
# Starts with a letter, so an alias can never be mistaken for an id.
AliasName = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z][A-Za-z0-9._-]*$",
                                description="a name starting with a letter: letters, digits, . _ -")]


class AliasTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")  # the schema says exactly what is taken

    learngene_id: int = Field(ge=1, le=MAX_ID)

    @field_validator("learngene_id", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        # pydantic reads `true` as 1 for an int; JSON Schema's integer does not include booleans.
        if isinstance(value, bool):
            raise ValueError("learngene_id must be an integer, not a boolean")
        return value


def alias_public(row: LearngeneAlias) -> AliasPublic:
    return AliasPublic(name=row.name, learngene_id=row.learngene_id, updated_at=row.updated_at)


def aliases_of(session: Session, learngene_ids: list[int]) -> dict[int, list[str]]:
    """{learngene id: its alias names, sorted} for these learngenes (the catalog's `aliases`)."""
    found: dict[int, list[str]] = {}
    if learngene_ids:
        rows = session.execute(select(LearngeneAlias.learngene_id, LearngeneAlias.name)
                               .where(LearngeneAlias.learngene_id.in_(learngene_ids))
                               .order_by(LearngeneAlias.name)).all()
        for learngene_id, name in rows:
            found.setdefault(learngene_id, []).append(name)
    return found


def resolve_alias(session: Session, name: str) -> Learngene:
    """The learngene an alias points at, or a 422 naming the alias (POST /individuals' learngene_alias)."""
    row = session.get(LearngeneAlias, name)
    if row is None:
        known = ", ".join(session.scalars(select(LearngeneAlias.name).order_by(LearngeneAlias.name)).all())
        raise Problem(404, "Unknown learngene alias", f"no learngene alias {name!r}"
                      + (f" (aliases: {known})" if known else " (none are set: PUT /learngenes/aliases/{name})"),
                      type="unknown-learngene")
    return session.get(Learngene, row.learngene_id)


@router.get("", response_model=list[AliasPublic], summary="List learngene aliases")
def list_aliases(session: SessionDep) -> list[AliasPublic]:
    """Every alias and the learngene it points at, by name (an alias names a learngene, like `champion`)."""
    return [alias_public(r) for r in session.scalars(select(LearngeneAlias).order_by(LearngeneAlias.name))]


@router.put("/{name}", response_model=AliasPublic, responses=ERRORS, summary="Set or move a learngene alias")
def set_alias(name: AliasName, target: AliasTarget, session: SessionDep,
              key: Annotated[ApiKey | None, WRITE]) -> AliasPublic:
    """Point the alias at a learngene: creates it, or moves it in one transaction (the move is recorded with
    the key that made it). Needs a write key."""
    if session.get(Learngene, target.learngene_id) is None:
        raise Problem(404, "Unknown learngene", f"learngene {target.learngene_id} does not exist",
                      type="unknown-learngene")
    try:
        return _move(session, name, target.learngene_id, key)
    except IntegrityError:  # two first PUTs of one name raced to insert it: the row exists now, so move it
        session.rollback()
        return _move(session, name, target.learngene_id, key)


def _move(session: Session, name: str, learngene_id: int, key: ApiKey | None) -> AliasPublic:
    """Set the alias and record the move, in one transaction."""
    # Row lock on PostgreSQL: two moves of one alias serialise, and each event's `from` is the true one.
    row = session.scalars(select(LearngeneAlias).where(LearngeneAlias.name == name).with_for_update()).first()
    before = row.learngene_id if row else None
    if row is None:
        row = LearngeneAlias(name=name, learngene_id=learngene_id)
        session.add(row)
    row.learngene_id, row.updated_at = learngene_id, utcnow()
    if before != learngene_id:
        session.add(LearngeneAliasEvent(name=name, from_learngene_id=before, to_learngene_id=learngene_id,
                                        api_key_id=key.id if key else None))
    session.commit()
    return alias_public(row)


@router.get("/{name}", response_model=AliasPublic, responses={404: {"model": ProblemDetail}},
            summary="Read a learngene alias")
def get_alias(name: AliasName, session: SessionDep) -> AliasPublic:
    """Which learngene the alias points at, and when it was last set or moved."""
    row = session.get(LearngeneAlias, name)
    if row is None:
        raise not_found("learngene alias", name)
    return alias_public(row)


@router.delete("/{name}", status_code=204, response_class=Response, responses=ERRORS,
               summary="Remove a learngene alias")
def delete_alias(name: AliasName, session: SessionDep, key: Annotated[ApiKey | None, WRITE]) -> Response:
    """Remove the alias (the learngene stays); the removal is recorded. Needs a write key."""
    row = session.get(LearngeneAlias, name)
    if row is None:
        raise not_found("learngene alias", name)
    session.add(LearngeneAliasEvent(name=name, from_learngene_id=row.learngene_id, to_learngene_id=None,
                                    api_key_id=key.id if key else None))
    session.delete(row)
    session.commit()
    return Response(status_code=204)
