"""Training an individual from a learngene: the work behind POST /individuals.

    run_individual_job(ctx, job_id)     # what the Celery task calls; tests call it directly

Runs in parallel on every worker that consumes the `individuals` queue; each job trains a fresh copy
of the learngene, so jobs share nothing but read-only artifacts.
"""
from __future__ import annotations

import numpy as np

from learngene import Collective, Learngene, TrainOptions, load_dataset, train_individual
from learngene.individual import distils
from service import jobstate
from service.models import CollectiveVersion, Individual, Job, Learngene as LearngeneRow
from service.uploads import limits
from workers.context import WorkerContext
from workers.jobrun import Reporter, json_safe, run_claimed


def run_individual_job(ctx: WorkerContext, job_id: int, worker: str | None = None) -> None:
    run_claimed(ctx, job_id, worker, lambda job, reporter: _train(ctx, job, reporter))


def _train(ctx: WorkerContext, job: Job, reporter: Reporter) -> None:
    p, store = job.params, ctx.store
    with ctx.sessions() as s:
        gene_row = s.get(LearngeneRow, p["learngene_id"])
        gene_sha = gene_row.weights_sha256
        version = s.get(CollectiveVersion, gene_row.collective_version_id)
        collective_sha = version.weights_sha256 if version is not None else None
    reporter.progress({"stage": "loading", "fraction": 0.0})
    gene = Learngene.from_bytes(store.get(gene_sha))
    o = p["options"]
    init = o.get("init", "auto")
    options = TrainOptions(epochs=o.get("epochs"), seed=o.get("seed", 0), init=init, lr=o.get("lr"),
                           anchor=o.get("anchor", 0.0), max_parameters=o.get("max_parameters"),
                           **({"distill": o["distill"]} if o.get("distill") is not None else {}))
    # The whole conv trunk of the learngene's collective: for instant and probe, for auto (which weighs
    # instant), and for the learngene individual when it distils the instant model (the library's rule).
    trunk = None
    has_collective = collective_sha is not None
    if has_collective and (init in ("auto", "instant", "probe") or distils(init, options, has_collective)):
        trunk = Learngene.whole(Collective.from_bytes(store.get(collective_sha)))
    support = load_dataset(store.get(p["support_sha256"]), filename=p.get("filename"), limits=limits(ctx.settings))
    query = load_dataset(store.get(p["eval_sha256"]), limits=limits(ctx.settings)) if p.get("eval_sha256") else None
    ind = train_individual(support, gene, options, eval_set=query, progress=reporter.part(0.0, 0.95),
                           should_stop=reporter.should_stop, trunk=trunk)
    reporter.progress({"stage": "saving", "fraction": 0.97})
    weights = store.put(ind.to_bytes())  # before the row: a row never points at a missing file
    counts = np.bincount(support.y, minlength=support.num_classes)
    with ctx.sessions() as s:
        row = Individual(
            learngene_id=p["learngene_id"], init=ind.init, classes=list(ind.class_names),
            shots={n: int(c) for n, c in zip(support.class_names, counts)},
            options=json_safe(ind.options), metrics=json_safe(ind.metrics), parameters=int(ind.parameters),
            channels=gene.spec.channels, size=gene.spec.size, support_sha256=p["support_sha256"],
            eval_sha256=p.get("eval_sha256"), weights_sha256=weights,
        )
        s.add(row)
        s.flush()
        # The row and the job's end commit together, or not at all: a run that lost the job (fencing,
        # service/jobstate.py) takes its individual back, so one job never makes two.
        result = {"individual_id": row.id}
        if ind.init != "scratch":  # a scratch model inherits nothing: its job names no learngene
            result["learngene_id"] = p["learngene_id"]
        if not jobstate.succeed(s, job.id, reporter.attempt, result, last_progress=json_safe(reporter.last)):
            s.rollback()
            return
        s.commit()
