"""The Learngene REST service: FastAPI front end, SQL registry, artifact store, Celery app.

    python -m service run        # embedded: migrations, API and one worker, prints the URL
    python -m service api        # production API (migrations first)
    python -m service migrate    # only the migrations

It uses `learngene/` to read datasets and predict, and sends training jobs to `workers/` by task name.
"""
