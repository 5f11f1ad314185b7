"""Individual models: few-shot networks built from a learngene on request, then used for predictions.

    POST /individuals                    multipart file (+ eval_file, learngene_id, init, epochs, seed,
                                         max_parameters) → 202 job
    GET  /individuals                    newest first
    GET  /individuals/{id}               learngene_id, init, classes, parameters, metrics
    POST /individuals/{id}/predictions   multipart file: an .npz with x, or one image
    GET  /individuals/{id}/weights       safetensors bytes
    DELETE /individuals/{id}             the row, and its weights when nothing else uses them

    curl -F file=@support.npz -F init=learngene http://127.0.0.1:8000/individuals
    curl -F file=@digit.png http://127.0.0.1:8000/individuals/1/predictions
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from service.auth import PREDICT, WRITE, WriteKey
from service.deps import MAX_ID, EnqueueDep, IdempotencyKey, RowId, SessionDep, SettingsDep, StoreDep
from service.jobs import (DuplicateRequest, accepted, find_by_key, key_in_flight, key_scope, replay, request_hash,
                          stored_uploads, submit)
from service.models import Individual, Job, JobKind, Learngene
from service.pagination import PageDep, paginate
from service.problems import Problem, ProblemDetail
from service.registry import artifact_in_use, get_or_404, newest_learngene
from service.schemas import (Conversion, IndividualCreate, IndividualPublic, JobPublic, Page, PredictionsPublic,
                             VersionRef)
from service.uploads import (DATASET_FILE, IMAGES_FILE, check_filename, parse_dataset, parse_images,
                             read_upload, stage_upload)
from service.cards import CardQuery, card_response, individual_card
from service.onnx_export import onnx_bytes
from service.routers.aliases import resolve_alias
from service.weights import weights_response

router = APIRouter(prefix="/individuals", tags=["individuals"])
ERRORS = {code: {"model": ProblemDetail} for code in (404, 409, 413, 422, 429, 503)}
AUTH_ERRORS = {**ERRORS, 401: {"model": ProblemDetail}, 403: {"model": ProblemDetail}}


@router.post("", status_code=202, response_model=JobPublic, responses=AUTH_ERRORS, summary="Order an individual model")
def create_individual(
    form: Annotated[IndividualCreate, Form()],
    file: Annotated[UploadFile, File(description=f"the support set, {DATASET_FILE}")],
    key: WriteKey, session: SessionDep, settings: SettingsDep, store: StoreDep, enqueue: EnqueueDep,
    response: Response,
    eval_file: Annotated[UploadFile | None, File(description=f"optional held-out query set, {DATASET_FILE}")] = None,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    """Build a few-shot model from a small labelled support set and a learngene (the newest unless
    `learngene_id` or `learngene_alias` says). `init=auto` (default) returns the best of the others for this
    support set, chosen by cross-validation over its shots and recorded in `metrics.auto`; `init=learngene`
    trains the small net built on the learngene; `init=scratch` the same shape from random weights (the
    comparison); `init=instant` needs no training (the collective's features and a prototype head);
    `init=probe` fits a linear head on those frozen features (a logistic regression, under a second). With
    `eval_file` the job also reports held-out accuracy. 202 with the job; its result names the individual.
    Needs a write key."""
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
            learngene = _learngene_for(session, form.learngene_id, form.learngene_alias)
            if form.max_parameters is not None:  # before anything is written: a budget no model fits is a 422
                check_budget(store, learngene, form.init, form.max_parameters, support_set.num_classes)
            with stored_uploads(session, store, support, evals) as (support_sha, eval_sha):
                options = form.model_dump(exclude={"learngene_id", "learngene_alias"})
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


def check_budget(store, learngene: Learngene, init: str, max_parameters: int, num_classes: int) -> None:
    """422 budget-too-small, with the smallest budget that works, when no model of the family fits."""
    from learngene import Learngene as Gene
    from learngene.sizing import smallest_budget

    gene = Gene.from_bytes(store.get(learngene.weights_sha256))
    if init in ("instant", "probe"):  # the collective's whole trunk (all positions of the layout) and a head
        least = smallest_budget(gene.source_config, list(range(len(gene.source_config.widths))), num_classes,
                                head="cosine" if init == "instant" else "linear")
    else:  # learngene and scratch share the architecture; auto weighs them (and instant when it fits)
        least = smallest_budget(gene.source_config, gene.layers, num_classes)
    if max_parameters < least:
        raise Problem(422, "Budget too small", f"max_parameters {max_parameters} is below the smallest model of "
                      f"this learngene's family for {num_classes} classes ({least} parameters)",
                      type="budget-too-small", smallest_budget=least, max_parameters=max_parameters)


def _learngene_for(session, learngene_id: int | None, alias: str | None = None) -> Learngene:
    if alias is not None:
        named = resolve_alias(session, alias)
        if learngene_id is not None and learngene_id != named.id:
            raise Problem(422, "Conflicting learngene", f"learngene_id {learngene_id} and learngene_alias {alias!r} "
                          f"(learngene {named.id}) disagree: send one of them", type="invalid-request")
        return named
    if learngene_id is None:
        newest = newest_learngene(session)
        if newest is None:
            raise Problem(409, "No learngene yet", "no learngene exists yet: upload a task first (POST /tasks)",
                          type="no-learngene")
        return newest
    found = session.get(Learngene, learngene_id)
    if found is None:
        raise Problem(404, "Unknown learngene", f"learngene {learngene_id} does not exist", type="unknown-learngene")
    return found


def individual_public(ind: Individual) -> IndividualPublic:
    # A scratch model inherits nothing: it names the collective version whose network shape it copies instead,
    # so it is not counted among the learngene's offspring (its row keeps the learngene, for that shape).
    scratch = ind.init == "scratch"
    version = ind.learngene.collective_version
    links = {"self": f"/individuals/{ind.id}", "predictions": f"/individuals/{ind.id}/predictions",
             "weights": f"/individuals/{ind.id}/weights", "card": f"/individuals/{ind.id}/card",
             "onnx": f"/individuals/{ind.id}/model.onnx"}
    if not scratch:
        links["learngene"] = f"/learngenes/{ind.learngene_id}"
    return IndividualPublic(
        id=ind.id, learngene_id=None if scratch else ind.learngene_id, init=ind.init,
        based_on_collective_version=VersionRef(collective=version.collective.name, number=version.number)
        if scratch else None,
        classes=ind.classes, shots=ind.shots, parameters=ind.parameters, metrics=ind.metrics, options=ind.options,
        channels=ind.channels, size=ind.size, sizing=(ind.metrics or {}).get("size"), sha256=ind.weights_sha256,
        created_at=ind.created_at, links=links,
    )


@router.get("", response_model=Page[IndividualPublic], summary="List individuals")
def list_individuals(session: SessionDep, page: PageDep,
                     learngene_id: Annotated[int | None, Query(ge=1, le=MAX_ID,
                                                              description="built from this learngene")] = None,
                     ) -> Page[IndividualPublic]:
    """Individual models newest first; `learngene_id` keeps those built from that learngene (scratch models
    inherit nothing and are not among them); pages of `limit` rows, `next_cursor` for the next."""
    stmt = select(Individual)
    if learngene_id is not None:
        stmt = stmt.where(Individual.learngene_id == learngene_id, Individual.init != "scratch")
    rows, cursor = paginate(session, stmt, Individual.id, page)
    return Page[IndividualPublic](items=[individual_public(r[0]) for r in rows], limit=page.limit, next_cursor=cursor)


@router.get("/{individual_id}", response_model=IndividualPublic, responses={404: {"model": ProblemDetail}},
            summary="Get an individual")
def get_individual(individual_id: RowId, session: SessionDep) -> IndividualPublic:
    """Its learngene (or, for `scratch`, the version whose shape it copies), classes and shots, training
    options, metrics (per-epoch history, held-out accuracy) and links."""
    return individual_public(get_or_404(session, Individual, individual_id, "individual"))


@router.delete("/{individual_id}", status_code=204, response_class=Response, dependencies=[WRITE],
               summary="Delete an individual",
               responses={code: {"model": ProblemDetail} for code in (401, 403, 404)})
def delete_individual(individual_id: RowId, session: SessionDep, store: StoreDep) -> Response:
    """Delete the model and its weights file (kept while another row uses the same bytes). Its job stays, and
    its result still names the id, which now answers 404. Needs a write key."""
    ind = get_or_404(session, Individual, individual_id, "individual")
    digest = ind.weights_sha256
    session.delete(ind)
    session.commit()
    if not artifact_in_use(session, digest):
        store.delete(digest)
    return Response(status_code=204)


@router.post("/{individual_id}/predictions", response_model=PredictionsPublic, responses=AUTH_ERRORS,
             dependencies=[PREDICT], summary="Classify images")
async def predict(individual_id: RowId, file: Annotated[UploadFile, File(description=IMAGES_FILE)],
                  request: Request, settings: SettingsDep) -> PredictionsPublic:
    """Label, class probabilities and an `unknown` flag per image. Images of another size or channel count are
    converted to the model's input, and `conversion` says from what to what (null when none was needed).
    Any valid key (read or write)."""
    digest, takes = await run_in_threadpool(_weights_of, request, individual_id)
    images = await run_in_threadpool(lambda: parse_images(read_upload(file, settings), file.filename, settings))
    sent = list(images.shape[1:])
    # The model runs on the prediction pool (service/predict.py), batched with concurrent requests.
    return PredictionsPublic(predictions=await request.app.state.predictor.predict(digest, images),
                             conversion=Conversion(from_=sent, to=takes) if sent != takes else None)


def _weights_of(request: Request, individual_id: int) -> tuple[str, list[int]]:
    """The individual's weights digest and the [size, size, channels] it takes."""
    with request.app.state.sessions() as session:
        ind = get_or_404(session, Individual, individual_id, "individual")
        return ind.weights_sha256, [ind.size, ind.size, ind.channels]


@router.get("/{individual_id}/weights", response_class=Response, summary="Download an individual's weights",
            responses={200: {"content": {"application/octet-stream": {}}, "description": "safetensors"},
                       404: {"model": ProblemDetail}})
def get_individual_weights(individual_id: RowId, session: SessionDep, store: StoreDep, request: Request,
                           card: CardQuery = False) -> Response:
    """The whole model as a safetensors file, with an ETag (the sha256) for conditional requests; with
    ?card=true the model card's metadata is added to the safetensors header."""
    ind = get_or_404(session, Individual, individual_id, "individual")
    meta = individual_card(session, store, ind).metadata if card else None
    return weights_response(store, ind.weights_sha256, f"individual-{ind.id}.safetensors", request, card=meta)


@router.get("/{individual_id}/card", response_class=Response, responses={
    200: {"content": {"text/markdown": {}}, "description": "model card: Markdown with YAML front matter"},
    404: {"model": ProblemDetail}}, summary="An individual's model card")
def get_individual_card(individual_id: RowId, session: SessionDep, store: StoreDep) -> Response:
    """The individual's model card: its learngene (base model) and that learngene's lineage, classes and shots,
    training options, metrics with their protocol, parameters, input, library versions, sha256."""
    return card_response(individual_card(session, store, get_or_404(session, Individual, individual_id,
                                                                    "individual")))


@router.get("/{individual_id}/model.onnx", response_class=Response, responses={
    200: {"content": {"application/octet-stream": {}}, "description": "ONNX model"}, 404: {"model": ProblemDetail}},
    summary="Download an individual as ONNX")
def get_individual_onnx(individual_id: RowId, session: SessionDep, store: StoreDep) -> Response:
    """The individual as ONNX: input `images` float32 (N, C, S, S) = uint8/127.5 - 1 after conversion to its
    input spec, dynamic N; output `probabilities` (N, classes, softmax included); metadata_props class_names
    (JSON), channels, size, unknown_threshold, model_card."""
    ind = get_or_404(session, Individual, individual_id, "individual")
    card = individual_card(session, store, ind).metadata
    digest = ind.weights_sha256
    session.close()  # free the connection while the export runs

    def load():
        from learngene import Individual as Model  # torch only when a model is exported

        return Model.from_bytes(store.get(digest))

    blob = onnx_bytes(digest, load, card)
    return Response(blob, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="individual-{individual_id}.onnx"'})
