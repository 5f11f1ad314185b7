"""Alembic environment: the URL comes from the service settings; SQLite migrates in batch mode.

    python -m service migrate            # what the service runs at start
    alembic upgrade head                 # the same, by hand
    alembic revision --autogenerate -m "add column"
"""
from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from service.db import make_engine
from service.models import Base
from service.settings import Settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    # A caller (tests, `service.migrate`) may pass the URL in; otherwise read the environment.
    return config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url") or Settings().database


def run_migrations_offline() -> None:
    url = database_url()
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True,
                      render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = database_url()
    engine = make_engine(url)
    with engine.connect() as connection:
        # Batch mode: SQLite cannot ALTER most things, so Alembic copies the table instead.
        context.configure(connection=connection, target_metadata=Base.metadata,
                          render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
