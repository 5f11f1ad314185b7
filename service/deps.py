"""Typed dependencies for routers: what the app factory put on `app.state`.

    def handler(session: SessionDep, settings: SettingsDep, store: StoreDep, enqueue: EnqueueDep): ...
"""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request

from service.artifacts import Store
from service.db import SessionDep  # noqa: F401 - re-exported so routers import deps from one place
from service.jobs import Enqueue
from service.predict import ModelCache
from service.schemas import NAME_PATTERN
from service.settings import Settings


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _store(request: Request) -> Store:
    return request.app.state.store


def _enqueue(request: Request) -> Enqueue:
    return request.app.state.enqueue


def _models(request: Request) -> ModelCache:
    return request.app.state.models


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[Store, Depends(_store)]
EnqueueDep = Annotated[Enqueue, Depends(_enqueue)]
ModelsDep = Annotated[ModelCache, Depends(_models)]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=200,
           description="a retried request with the same key gets the same job"),
]

# Ids and numbers the database can hold (PostgreSQL INTEGER; SQLite refuses Python ints past 64 bits):
# anything larger cannot exist, so it is refused as a 422 instead of reaching the database.
MAX_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
CollectiveName = Annotated[str, Path(max_length=100, pattern=NAME_PATTERN)]
CollectiveFilter = Annotated[str | None, Query(max_length=100, pattern=NAME_PATTERN, description="a collective's name")]
