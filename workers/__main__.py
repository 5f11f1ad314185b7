"""Start a worker with the service settings (LEARNGENE_* environment variables).

    learngene worker                                   # queues and concurrency from the settings
    learngene worker -n gpu0@%h -Q individuals         # extra arguments go to `celery worker`
    python -m workers ...                              # the same (what the embedded service starts)

One process per GPU in production: give each its own CUDA_VISIBLE_DEVICES.
"""
from __future__ import annotations

import sys

from service.settings import Settings


def main(argv: list[str] | None = None) -> None:
    settings = Settings()
    from celery.signals import setup_logging

    from service.observability import configure_logging
    from workers.worker import make_worker_app

    # JSON lines like the API's, instead of Celery's own log format (its banner still goes to stdout).
    setup_logging.connect(lambda **_: configure_logging(), weak=False)

    app = make_worker_app(settings)
    extra = list(sys.argv[1:] if argv is None else argv)
    args = ["worker", "--loglevel=INFO", "-c", str(settings.worker_concurrency)]
    if "-Q" not in extra and "--queues" not in extra:
        args += ["-Q", settings.worker_queues]
    # Jobs are long and few: no gossip, mingle or events between workers.
    args += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    app.worker_main(args + extra)


if __name__ == "__main__":
    main()
