"""Keyset pagination, newest first: stable under inserts and as fast on page 200 as on page 1.

    rows, next_cursor = paginate(session, select(Learngene, ...), Learngene.id, page)
    def list_things(page: PageDep): ...     # ?limit=50&cursor=...

A cursor is `n` followed by the id the next page starts below (`n42`): the pattern in the OpenAPI document
says exactly which strings are cursors, so any string it allows is one the service accepts (a cursor past
every id simply means "from the newest"), and anything else is a 422 before a query runs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from service.deps import MAX_ID
from service.problems import Problem

CURSOR_PATTERN = r"^n[0-9]{1,10}$"
_CURSOR = re.compile(r"n([0-9]{1,10})")
CURSOR_DESCRIPTION = "the `next_cursor` of the previous page (`n` and digits); omit for the first page"


@dataclass
class PageParams:
    limit: int
    after_id: int | None  # rows with a smaller id come next


def encode_cursor(last_id: int) -> str:
    return f"n{last_id}"


def decode_cursor(cursor: str) -> int | None:
    """The id a cursor names; None past every id a row can have (the first page: PostgreSQL's INTEGER could not
    even hold the number for the comparison)."""
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        raise Problem(422, "Invalid cursor", f"cursor {cursor[:40]!r} is not one this service handed out: pass the "
                      "`next_cursor` of the previous page as it is", type="invalid-request")
    after = int(match.group(1))
    return after if after <= MAX_ID else None


def page_params(request: Request, limit: Annotated[int | None, Query(ge=1, description="rows per page")] = None,
                cursor: Annotated[str | None, Query(max_length=11, pattern=CURSOR_PATTERN,
                                                    description=CURSOR_DESCRIPTION)] = None) -> PageParams:
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
