"""Database engine and sessions for the registry (SQLite embedded, PostgreSQL in production).

    engine = make_engine(settings.database)
    Session = sessionmaker(engine, expire_on_commit=False)
    def handler(session: SessionDep): ...     # in a router
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, idle_in_transaction_s: float | None = None) -> Engine:
    """An engine with the pragmas SQLite needs to be shared by an API and a worker process.

    `idle_in_transaction_s` (PostgreSQL; workers pass their job timeout): the server ends a session that sits
    inside a transaction this long. A worker frozen mid-write (SIGSTOP, a paused VM) would otherwise hold its
    row locks for ever, and the reaper that should take its job back would wait on them for ever too.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args = {}
    if idle_in_transaction_s:
        ms = max(1000, math.ceil(idle_in_transaction_s * 1000))
        connect_args["options"] = f"-c idle_in_transaction_session_timeout={ms}"
    # pool_pre_ping: a worker may sit idle for hours while PostgreSQL restarts under it.
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, connect_args=connect_args)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the API read while a worker writes; busy_timeout waits for the writer instead of failing.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
