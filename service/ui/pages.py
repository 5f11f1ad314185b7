"""Dashboard pages: the registry as HTML (Jinja2, autoescaped), read through the same session as the API.

    /ui                                   overview: counts, collectives, newest learngenes, recent jobs
    /ui/collectives/{name}                versions, parameter growth, head accuracy matrix
    /ui/collectives/{name}/versions/{n}   one version: accuracy matrix, open-world report of its task
    /ui/learngenes, /ui/learngenes/{id}   catalog (filters, pages); heatmap, why these layers, lineage
    /ui/individuals, /ui/individuals/{id} metrics, training curve, weights
    /ui/jobs, /ui/jobs/{id}               status and live progress (server-sent events)

Unknown ids and paths under /ui answer an HTML 404 page. Ids use Starlette's `int` convertor, so
`/ui/learngenes/abc` is a page that does not exist rather than a JSON validation error.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import func, select

from service.cards import individual_card, learngene_card
from service.routers.learngenes import storage_of
from service.deps import MAX_ID, SessionDep, StoreDep
from service.jobs import job_public
from service.models import Collective, CollectiveVersion, Individual, Job, JobStatus, Learngene, Task
from service.pagination import PageParams, decode_cursor, paginate
from service.problems import Problem
from service.registry import collective_by_name, head_version, task_names_up_to
from service.schemas import METHOD_PATTERN, NAME_PATTERN

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 25


class PageNotFound(Exception):
    """Raised by a page for an unknown id; answered with the HTML 404 page."""

    status, heading = 404, "Not found"


class BadPageLink(PageNotFound):
    """A page link this service never made (a forged cursor): an HTML 400 page with a way back to page 1."""

    status, heading = 400, "Bad link"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _number(value: int | float | None) -> str:
    return "–" if value is None else f"{value:,}"


def _when(value: datetime | None) -> str:
    return "–" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("service.ui", "templates"),
                      autoescape=select_autoescape(["html"], default=True))
    env.filters.update(percent=_percent, number=_number, when=_when)
    return env


templates = Jinja2Templates(env=_environment())


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, template, context, status_code=status_code)


async def not_found_page(request: Request, exc: PageNotFound) -> HTMLResponse:
    return render(request, "not_found.html", status_code=exc.status, message=str(exc), heading=exc.heading,
                  first_page=request.url.remove_query_params("cursor") if exc.status == 400 else None)


def _row(session, model: type, ident: int, what: str):
    # Ids past what the database holds cannot exist (and SQLite would refuse them with an error).
    row = session.get(model, ident) if 1 <= ident <= MAX_ID else None
    if row is None:
        raise PageNotFound(f"{what} {ident} does not exist")
    return row


def _collective(session, name: str) -> Collective:
    collective = collective_by_name(session, name) if re.fullmatch(NAME_PATTERN, name) else None
    if collective is None:
        raise PageNotFound(f"collective {name!r} does not exist")
    return collective


def _page(request: Request, session, stmt, id_column) -> tuple[list, str | None]:
    """One page of rows, newest first, and the URL of the next page (same filters) or None."""
    try:
        after = decode_cursor(request.query_params["cursor"]) if request.query_params.get("cursor") else None
    except Problem as e:  # a cursor this service never made
        raise BadPageLink(e.detail) from e
    rows, cursor = paginate(session, stmt, id_column, PageParams(limit=PAGE_SIZE, after_id=after))
    return rows, str(request.url.include_query_params(cursor=cursor)) if cursor else None


def _catalog_rows():
    return (select(Learngene, Collective.name, CollectiveVersion.number)
            .join(CollectiveVersion, Learngene.collective_version_id == CollectiveVersion.id)
            .join(Collective, CollectiveVersion.collective_id == Collective.id))


# --------------------------------------------------------------------------------------------- pages


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui")


@router.get("/ui", response_class=HTMLResponse)
def overview(request: Request, session: SessionDep) -> HTMLResponse:
    counts = {label: session.scalar(select(func.count()).select_from(model)) for label, model in
              (("collectives", Collective), ("versions", CollectiveVersion), ("learngenes", Learngene),
               ("individuals", Individual), ("jobs", Job))}
    by_status = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    collectives = [(c, head_version(session, c.id)) for c in session.scalars(select(Collective).order_by(Collective.id))]
    newest = session.execute(_catalog_rows().order_by(Learngene.id.desc()).limit(5)).all()
    jobs = [job_public(j) for j in session.scalars(select(Job).order_by(Job.id.desc()).limit(10))]
    return render(request, "overview.html", counts=counts, collectives=collectives, learngenes=newest, jobs=jobs,
                  by_status={JobStatus(k).value: v for k, v in by_status.items()})


@router.get("/ui/collectives/{name}", response_class=HTMLResponse)
def collective_page(name: str, request: Request, session: SessionDep) -> HTMLResponse:
    collective = _collective(session, name)
    versions = list(collective.versions)
    ids = [v.id for v in versions]
    tasks = {t.collective_version_id: t for t in
             session.scalars(select(Task).where(Task.collective_version_id.in_(ids)))}
    genes = dict(session.execute(select(Learngene.collective_version_id, Learngene.id)
                                 .where(Learngene.collective_version_id.in_(ids)).order_by(Learngene.id)).all())
    numbers = {v.id: v.number for v in versions}
    rows = [{"version": v, "parent": numbers.get(v.parent_id), "task": tasks.get(v.id), "learngene": genes.get(v.id)}
            for v in versions]
    pending = session.scalars(select(Task).where(Task.collective_id == collective.id,
                                                 Task.collective_version_id.is_(None)).order_by(Task.id)).all()
    return render(request, "collective.html", collective=collective, rows=rows,
                  head=versions[-1] if versions else None, pending=pending)


@router.get("/ui/collectives/{name}/versions/{number:int}", response_class=HTMLResponse)
def version_page(name: str, number: int, request: Request, session: SessionDep) -> HTMLResponse:
    collective = _collective(session, name)
    version = next((v for v in collective.versions if v.number == number), None)
    if version is None:
        raise PageNotFound(f"collective {name!r} has no version {number}")
    parent = session.get(CollectiveVersion, version.parent_id) if version.parent_id else None
    task = session.scalars(select(Task).where(Task.collective_version_id == version.id)).first()
    gene = session.scalars(select(Learngene).where(Learngene.collective_version_id == version.id)
                           .order_by(Learngene.id)).first()
    return render(request, "version.html", collective=collective, version=version, parent=parent, task=task,
                  learngene=gene, task_names=task_names_up_to(session, version),
                  head=collective.versions[-1].number)


@router.get("/ui/learngenes", response_class=HTMLResponse)
def learngenes_page(request: Request, session: SessionDep, collective: str | None = None,
                    method: str | None = None) -> HTMLResponse:
    for value, pattern in ((collective, NAME_PATTERN), (method, METHOD_PATTERN)):
        if value and not re.fullmatch(pattern, value):  # no such name (and no NUL byte reaches PostgreSQL)
            raise BadPageLink(f"{value[:40]!r} is not a collective or method name")
    stmt = _catalog_rows()
    if collective:
        stmt = stmt.where(Collective.name == collective)
    if method:
        stmt = stmt.where(Learngene.method == method)
    rows, next_url = _page(request, session, stmt, Learngene.id)
    return render(request, "learngenes.html", rows=rows, next_url=next_url, collective=collective, method=method,
                  collectives=session.scalars(select(Collective.name).order_by(Collective.name)).all(),
                  methods=session.scalars(select(Learngene.method).distinct().order_by(Learngene.method)).all())


@router.get("/ui/learngenes/{learngene_id:int}", response_class=HTMLResponse)
def learngene_page(learngene_id: int, request: Request, session: SessionDep, store: StoreDep) -> HTMLResponse:
    lg = _row(session, Learngene, learngene_id, "learngene")
    version = lg.collective_version
    collective = version.collective
    parent = session.get(CollectiveVersion, version.parent_id) if version.parent_id else None
    task = session.scalars(select(Task).where(Task.collective_version_id == version.id)).first()
    share = (lg.grad_stats or {}).get("share") or []
    chosen = set(lg.layers)
    layers = [{"index": i, "name": f"conv{i}", "score": s, "chosen": i in chosen,
               "mean_share": sum(share[i]) / len(share[i]) if i < len(share) and share[i] else None}
              for i, s in enumerate(lg.scores)]
    candidates = [{**c, "chosen": list(c.get("layers", [])) == list(lg.layers)} for c in lg.candidates or []]
    # Scratch models copy only the shape: they are not built from it (they show up as siblings on their page).
    individuals = session.scalars(select(Individual).where(Individual.learngene_id == lg.id,
                                                           Individual.init != "scratch")
                                  .order_by(Individual.id.desc()).limit(50)).all()
    return render(request, "learngene.html", lg=lg, version=version, collective=collective, parent=parent,
                  task=task, tasks_seen=list(enumerate(task_names_up_to(session, version), start=1)),
                  layers=layers, candidates=candidates, individuals=individuals,
                  selections=(lg.info or {}).get("selections") or {}, storage=storage_of(lg),
                  card=learngene_card(session, store, lg).markdown)


@router.get("/ui/individuals", response_class=HTMLResponse)
def individuals_page(request: Request, session: SessionDep) -> HTMLResponse:
    rows, next_url = _page(request, session, select(Individual), Individual.id)
    return render(request, "individuals.html", individuals=[r[0] for r in rows], next_url=next_url)


@router.get("/ui/individuals/{individual_id:int}", response_class=HTMLResponse)
def individual_page(individual_id: int, request: Request, session: SessionDep, store: StoreDep) -> HTMLResponse:
    ind = _row(session, Individual, individual_id, "individual")
    lg = ind.learngene
    # Other models trained on the very same support set (e.g. its scratch twin): the fair comparison.
    siblings = session.scalars(select(Individual).where(Individual.support_sha256 == ind.support_sha256,
                                                        Individual.id != ind.id)
                               .order_by(Individual.id.desc()).limit(20)).all()
    return render(request, "individual.html", ind=ind, lg=lg, version=lg.collective_version, siblings=siblings,
                  metrics=ind.metrics or {}, history=(ind.metrics or {}).get("history") or [],
                  card=individual_card(session, store, ind).markdown)


@router.get("/ui/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, session: SessionDep) -> HTMLResponse:
    rows, next_url = _page(request, session, select(Job), Job.id)
    return render(request, "jobs.html", jobs=[job_public(r[0]) for r in rows], next_url=next_url)


@router.get("/ui/jobs/{job_id:int}", response_class=HTMLResponse)
def job_page(job_id: int, request: Request, session: SessionDep) -> HTMLResponse:
    job = job_public(_row(session, Job, job_id, "job"))
    return render(request, "job.html", job=job, final=job.status in ("succeeded", "failed", "cancelled"))


@router.get("/ui/{rest:path}", response_class=HTMLResponse)
def unknown_page(rest: str) -> HTMLResponse:
    raise PageNotFound(f"there is no page /ui/{rest}")
