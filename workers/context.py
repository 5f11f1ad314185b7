"""What a worker process needs: settings, registry sessions, artifact store, its name, device, a way to requeue.

    ctx = WorkerContext.from_settings(Settings())    # one per process (workers.tasks makes it after the fork)
    ctx.send(job, 5.0)                                # the job's message again, in 5 s (None: tests calling jobs)

Nothing here depends on the API's file system: the store is the bucket (S3) or, in the embedded service,
the one folder both share on one host; the local cache and staging live under this process's own data_dir.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from service.artifacts import Store, open_store
from service.db import make_engine, make_sessionmaker
from service.events import install_publisher
from service.models import Job
from service.settings import Settings

Send = Callable[[Job, float], None]


def describe_device() -> str:
    """Where this process trains, for the Worker row and each job: `cuda:0 NVIDIA H200`, `cpu (1 thread)`."""
    import torch

    from learngene.device import select_device

    device = select_device()
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        count = torch.cuda.device_count()
        more = f" (+{count - 1} more)" if count > 1 else ""
        return f"cuda:{index} {torch.cuda.get_device_name(index)}{more}"[:200]
    threads = torch.get_num_threads()
    return f"{device.type} ({threads} thread{'s' if threads != 1 else ''})"


def worker_sessions(settings: Settings) -> sessionmaker[Session]:
    """Sessions for a worker process's threads: a transaction left idle for the job timeout is ended by the
    server (service/db.py: a frozen worker must not hold row locks the reaper waits on), and committed job
    changes wake the API's event streams (Redis broker)."""
    sessions = make_sessionmaker(make_engine(settings.database, idle_in_transaction_s=settings.job_timeout_s))
    install_publisher(sessions, settings)
    return sessions


@dataclass
class WorkerContext:
    settings: Settings
    sessions: sessionmaker[Session]
    store: Store
    name: str
    send: Send | None = None  # Celery: requeue with a countdown; None: the caller runs jobs itself (tests)
    device: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, name: str | None = None, send: Send | None = None) -> "WorkerContext":
        return cls(
            settings=settings,
            sessions=worker_sessions(settings),
            store=open_store(settings),
            name=name or f"{socket.gethostname()}:{os.getpid()}",
            send=send,
            device=describe_device(),
        )
