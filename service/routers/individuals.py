"""Individual models: few-shot networks built from a learngene on request, then used for predictions.

    POST /individuals                    multipart file (+ eval_file, learngene_id, init, epochs, seed) → 202 job
    GET  /individuals                    newest first
    GET  /individuals/{id}               learngene_id, init, classes, parameters, metrics
    POST /individuals/{id}/predictions   multipart file: an .npz with x, or one image
    GET  /individuals/{id}/weights       safetensors bytes

    curl -F file=@support.npz -F init=learngene http://127.0.0.1:8000/individuals
    curl -F file=@digit.png http://127.0.0.1:8000/individuals/1/predictions
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from service.auth import PREDICT, WriteKey
from service.deps import MAX_ID, EnqueueDep, IdempotencyKey, RowId, SessionDep, SettingsDep, StoreDep
from service.jobs import (DuplicateRequest, accepted, find_by_key, key_in_flight, key_scope, replay, request_hash,
                          stored_uploads, submit)
from service.models import Individual, Job, JobKind, Learngene
from service.pagination import PageDep, paginate
from service.problems import Problem, ProblemDetail
from service.registry import get_or_404, newest_learngene
from service.schemas import IndividualCreate, IndividualPublic, JobPublic, Page, PredictionsPublic
from service.uploads import check_filename, parse_dataset, parse_images, read_upload, stage_upload
from service.weights import weights_response

router = APIRouter(prefix="/individuals", tags=["individuals"])
ERRORS = {code: {"model": ProblemDetail} for code in (404, 409, 413, 422, 429, 503)}
AUTH_ERRORS = {**ERRORS, 401: {"model": ProblemDetail}, 403: {"model": ProblemDetail}}


@router.post("", status_code=202, response_model=JobPublic, responses=AUTH_ERRORS)
def create_individual(
    form: Annotated[IndividualCreate, Form()],
    file: Annotated[UploadFile, File(description="labelled support set: .npz or .zip")],
    key: WriteKey, session: SessionDep, settings: SettingsDep, store: StoreDep, enqueue: EnqueueDep,
    response: Response,
    eval_file: Annotated[UploadFile | None, File(description="optional labelled query set")] = None,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    scope = key_scope(key)
    with key_in_flight(JobKind.individual, idempotency_key, scope):
        check_filename(eval_file.filename if eval_file is not None else None, "eval_file")
        support = stage_upload(file, settings, store)
        evals = stage_upload(eval_file, settings, store) if eval_file is not None else None
        try:
            fingerprint = request_hash("individual", form.model_dump(), file.filename, support.sha256,
                                       evals.sha256 if evals else None)
            if (earlier := find_by_key(session, JobKind.individual, idempotency_key, scope)) is not None:
                return accepted(response, replay(earlier, fingerprint))
            support_set = parse_dataset(support.path, file.filename, settings, what="file")
            if evals is not None:
                query = parse_dataset(evals.path, eval_file.filename, settings, what="eval_file", min_classes=1)
                if not set(query.class_names) & set(support_set.class_names):
                    raise Problem(422, "Invalid dataset", "eval_file shares no class name with file",
                                  type="invalid-dataset")
            learngene = _learngene_for(session, form.learngene_id)
            with stored_uploads(session, store, support, evals) as (support_sha, eval_sha):
                options = form.model_dump(exclude={"learngene_id"})
                job = Job(kind=JobKind.individual, idempotency_key=idempotency_key, idempotency_scope=scope,
                          request_hash=fingerprint, params={
                              "learngene_id": learngene.id, "support_sha256": support_sha, "eval_sha256": eval_sha,
                              "options": options, "filename": file.filename,
                          })
                submit(session, enqueue, job)
        except DuplicateRequest as e:  # the same Idempotency-Key, sent twice at once (another API process)
            return accepted(response, replay(e.job, fingerprint))
        finally:
            support.discard()
            if evals is not None:
                evals.discard()
    return accepted(response, job)


def _learngene_for(session, learngene_id: int | None) -> Learngene:
    if learngene_id is None:
        newest = newest_learngene(session)
        if newest is None:
            raise Problem(409, "No learngene yet", "no learngene exists yet: upload a task first (POST /tasks)",
                          type="no-learngene")
        return newest
    found = session.get(Learngene, learngene_id)
    if found is None:
        raise Problem(422, "Unknown learngene", f"learngene {learngene_id} does not exist", type="unknown-learngene")
    return found


def individual_public(ind: Individual) -> IndividualPublic:
    return IndividualPublic(
        id=ind.id, learngene_id=ind.learngene_id, init=ind.init, classes=ind.classes, shots=ind.shots,
        parameters=ind.parameters, metrics=ind.metrics, options=ind.options, channels=ind.channels, size=ind.size,
        sha256=ind.weights_sha256, created_at=ind.created_at,
        links={"self": f"/individuals/{ind.id}", "predictions": f"/individuals/{ind.id}/predictions",
               "weights": f"/individuals/{ind.id}/weights", "learngene": f"/learngenes/{ind.learngene_id}"},
    )



@router.get("", response_model=Page[IndividualPublic])
def list_individuals(session: SessionDep, page: PageDep,
                     learngene_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None) -> Page[IndividualPublic]:
    stmt = select(Individual)
    if learngene_id is not None:
        stmt = stmt.where(Individual.learngene_id == learngene_id)
    rows, cursor = paginate(session, stmt, Individual.id, page)
    return Page[IndividualPublic](items=[individual_public(r[0]) for r in rows], limit=page.limit, next_cursor=cursor)


@router.get("/{individual_id}", response_model=IndividualPublic, responses={404: {"model": ProblemDetail}})
def get_individual(individual_id: RowId, session: SessionDep) -> IndividualPublic:
    return individual_public(get_or_404(session, Individual, individual_id, "individual"))


@router.post("/{individual_id}/predictions", response_model=PredictionsPublic, responses=AUTH_ERRORS,
             dependencies=[PREDICT])
async def predict(individual_id: RowId, file: Annotated[UploadFile, File(description=".npz with x, or one image")],
                  request: Request, settings: SettingsDep) -> PredictionsPublic:
    digest = await run_in_threadpool(_weights_of, request, individual_id)
    images = await run_in_threadpool(lambda: parse_images(read_upload(file, settings), settings))
    # The model runs on the prediction pool (service/predict.py), batched with concurrent requests.
    return PredictionsPublic(predictions=await request.app.state.predictor.predict(digest, images))


def _weights_of(request: Request, individual_id: int) -> str:
    with request.app.state.sessions() as session:
        return get_or_404(session, Individual, individual_id, "individual").weights_sha256


@router.get("/{individual_id}/weights", response_class=Response, responses={
    200: {"content": {"application/octet-stream": {}}, "description": "safetensors"}, 404: {"model": ProblemDetail}})
def get_individual_weights(individual_id: RowId, session: SessionDep, store: StoreDep, request: Request) -> Response:
    ind = get_or_404(session, Individual, individual_id, "individual")
    return weights_response(store, ind.weights_sha256, f"individual-{ind.id}.safetensors", request)
