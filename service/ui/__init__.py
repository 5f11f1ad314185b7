"""The dashboard: server-rendered HTML pages over the registry, at /ui (no JavaScript build step).

    install(app)     # static files at /ui/static, the pages, and / → /ui
"""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from service.ui.pages import PageNotFound, not_found_page, router

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    # Mounted before the pages: their catch-all /ui/{path} would otherwise answer for the static files.
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    app.include_router(router)
    app.add_exception_handler(PageNotFound, not_found_page)
