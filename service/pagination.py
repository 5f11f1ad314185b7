"""Keyset pagination, newest first: stable under inserts and as fast on page 200 as on page 1.

    rows, next_cursor = paginate(session, select(Learngene, ...), Learngene.id, page)
    def list_things(page: PageDep): ...     # ?limit=50&cursor=...
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from service.problems import Problem


@dataclass
class PageParams:
    limit: int
    after_id: int | None  # rows with a smaller id come next


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, value = raw.split(":", 1)
        if prefix != "id" or not value.isdigit():
            raise ValueError(raw)
        return int(value)
    except (ValueError, UnicodeDecodeError) as e:
        raise Problem(422, "Invalid cursor", "the cursor is not one this service handed out",
                      type="invalid-request") from e


def page_params(request: Request, limit: Annotated[int | None, Query(ge=1)] = None,
                cursor: Annotated[str | None, Query(max_length=100)] = None) -> PageParams:
    settings = request.app.state.settings
    limit = min(limit or settings.page_size, settings.max_page_size)
    return PageParams(limit=limit, after_id=decode_cursor(cursor) if cursor else None)


PageDep = Annotated[PageParams, Depends(page_params)]


def paginate(session: Session, stmt: Select, id_column: InstrumentedAttribute, page: PageParams):
    """Rows of `stmt` (newest first) for this page, and the cursor of the next page or None."""
    if page.after_id is not None:
        stmt = stmt.where(id_column < page.after_id)
    rows = session.execute(stmt.order_by(id_column.desc()).limit(page.limit + 1)).all()
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    last = rows[-1][0].id if rows and more else None
    return rows, (encode_cursor(last) if last is not None else None)
