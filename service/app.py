"""The FastAPI application factory.

    app = create_app()                          # settings from LEARNGENE_* environment variables
    app = create_app(settings, enqueue=fake)    # tests: own settings, own way of running jobs
    uvicorn service.app:create_app --factory

The database must already be migrated (`python -m service migrate`, or `python -m service run`).
"""
from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import ui
from service.artifacts import open_store
from service.auth import RateLimiter
from service.db import make_engine, make_sessionmaker
from service.events import JobSignals, install_publisher
from service.jobs import Enqueue
from service.observability import install_observability
from service.known_fields import KnownFieldsOnly
from service.openapi import contract_in_openapi, install_docs, package_version
from service.predict import ModelCache, Predictor
from service.problems import ProblemDetail, install_problem_handlers, problems_in_openapi
from service.queue import make_celery, send_job
from service.routers import aliases, collectives, health, individuals, jobs, learngenes, plots, tasks
from service.routers.plots import PngCache
from service.settings import Settings
from service.uploads import BodyLimit, UploadSlots

DESCRIPTION = """A model service on the Learngene paradigm: upload task datasets to grow a collective network,
browse the learngenes extracted from it, and order few-shot individual models built on them.
Long work runs as jobs (`/jobs/{id}`); every error is an RFC 9457 problem (`application/problem+json`)."""


def create_app(settings: Settings | None = None, enqueue: Enqueue | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = make_engine(settings.database)
    celery = make_celery(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        app.state.job_signals.close()
        app.state.predictor.close()
        engine.dispose()

    app = FastAPI(title="Learngene service", version=package_version(), description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  responses={500: {"model": ProblemDetail, "description": "unexpected error (problem+json)"}})
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = make_sessionmaker(engine)
    install_publisher(app.state.sessions, settings)  # cancels and refusals wake event streams too
    app.state.job_signals = JobSignals(settings)
    app.state.store = open_store(settings)
    app.state.celery = celery
    app.state.enqueue = enqueue or (lambda job: send_job(celery, job))
    app.state.models = ModelCache(app.state.store, settings.model_cache_size,
                                  on_first_load=settings.apply_torch_threads)
    app.state.predictor = Predictor(app.state.models, settings.predict_threads, settings.predict_queue,
                                    settings.predict_batch, settings.predict_batch_wait_s)
    app.state.plot_cache = PngCache()
    app.state.rate_limiter = RateLimiter()
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    # Uploads past the concurrency cap are refused before their body is read; observability is outermost, so
    # every answer (a refusal too) carries its request id.
    app.add_middleware(UploadSlots, slots=settings.max_concurrent_uploads, wait_s=settings.upload_wait_s)
    install_observability(app)
    install_problem_handlers(app)
    problems_in_openapi(app)
    contract_in_openapi(app)
    # aliases before learngenes: /learngenes/aliases/... must not read as /learngenes/{id}/...
    for module in (health, collectives, tasks, aliases, learngenes, individuals, jobs, plots):
        app.include_router(module.router, dependencies=[KnownFieldsOnly])
    install_docs(app)
    ui.install(app)
    return app
