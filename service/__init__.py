"""The Learngene REST service: FastAPI front end, SQL registry, artifact store, Celery app.

    learngene serve        # embedded: migrations, API and one worker, prints the URL (python -m service run)
    learngene api          # production API (migrations first)
    learngene migrate      # only the migrations

It uses `learngene/` to read datasets and predict, and sends training jobs to `workers/` by task name.
"""
