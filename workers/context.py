"""What a worker process needs: settings, registry sessions, artifact store, its own name.

    ctx = WorkerContext.from_settings(Settings())    # one per process (workers.tasks makes it after the fork)
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from service.artifacts import ArtifactStore
from service.db import make_engine, make_sessionmaker
from service.events import install_publisher
from service.settings import Settings


@dataclass
class WorkerContext:
    settings: Settings
    sessions: sessionmaker[Session]
    store: ArtifactStore
    name: str

    @classmethod
    def from_settings(cls, settings: Settings, name: str | None = None) -> "WorkerContext":
        sessions = make_sessionmaker(make_engine(settings.database))
        install_publisher(sessions, settings)  # job changes wake the API's event streams (Redis broker)
        return cls(
            settings=settings,
            sessions=sessions,
            store=ArtifactStore(settings.artifacts),
            name=name or f"{socket.gethostname()}:{os.getpid()}",
        )

