"""Registry queries shared by the API and the workers.

    head = head_version(session, collective.id)            # newest CollectiveVersion or None
    lg = newest_learngene(session)                          # default learngene for an individual
    c = ensure_collective(session, "default", spec, preset="small", seed=0)
"""
from __future__ import annotations

from sqlalchemy import exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from learngene.data import InputSpec
from service.models import Collective, CollectiveVersion, Individual, Learngene, Task
from service.problems import not_found


def get_or_404(session: Session, model: type, ident: int, what: str):
    """The row of `model` with primary key `ident`, or a 404 problem naming `what`."""
    row = session.get(model, ident)
    if row is None:
        raise not_found(what, ident)
    return row


def collective_by_name(session: Session, name: str) -> Collective | None:
    return session.scalars(select(Collective).where(Collective.name == name)).first()


def head_version(session: Session, collective_id: int) -> CollectiveVersion | None:
    return session.scalars(
        select(CollectiveVersion)
        .where(CollectiveVersion.collective_id == collective_id)
        .order_by(CollectiveVersion.number.desc())
        .limit(1)
    ).first()


def newest_learngene(session: Session) -> Learngene | None:
    return session.scalars(select(Learngene).order_by(Learngene.id.desc()).limit(1)).first()


def ensure_collective(session: Session, name: str, spec: InputSpec, preset: str, seed: int) -> Collective:
    """The collective called `name`, created with `spec` if it does not exist yet.

    Two first uploads may race to create it; the unique name decides and the loser reads the winner's row.
    """
    found = collective_by_name(session, name)
    if found is not None:
        return found
    try:
        with session.begin_nested():
            created = Collective(name=name, channels=spec.channels, size=spec.size, preset=preset, seed=seed)
            session.add(created)
        return created
    except IntegrityError:
        found = collective_by_name(session, name)
        if found is None:
            raise
        return found


def artifact_in_use(session: Session, digest: str) -> bool:
    """Whether any row refers to the artifact (before deleting an upload nobody kept)."""
    return bool(
        session.scalar(
            select(
                exists().where(Task.sha256 == digest)
                | exists().where(or_(Individual.support_sha256 == digest, Individual.eval_sha256 == digest,
                                     Individual.weights_sha256 == digest))
                | exists().where(Learngene.weights_sha256 == digest)
                | exists().where(CollectiveVersion.weights_sha256 == digest)
            )
        )
    )


def task_names_by_version(session: Session, collective_id: int, up_to: int | None = None) -> dict[int, str]:
    """{version number: name of the task that made it} for a collective's versions (up to `up_to`)."""
    stmt = (select(CollectiveVersion.number, Task.name)
            .join(Task, Task.collective_version_id == CollectiveVersion.id)
            .where(CollectiveVersion.collective_id == collective_id)
            .order_by(CollectiveVersion.number))
    if up_to is not None:
        stmt = stmt.where(CollectiveVersion.number <= up_to)
    return dict(session.execute(stmt).all())


def task_names_up_to(session: Session, version: CollectiveVersion) -> list[str]:
    """Names of the tasks that made versions 1..number of this version's collective, in learning order."""
    names = task_names_by_version(session, version.collective_id, version.number)
    return [names.get(n, f"task {n}") for n in range(1, version.number + 1)]
