"""API keys: bearer tokens, stored only as their sha256, scoped `read` or `write`.

    token, row = create_key(session, "write", name="ci")   # the token is shown once and never stored
    @router.post(..., dependencies=[WRITE])                # 401 without a valid key, 403 with a read key

Which endpoints need what (docs/service.md, "API keys"):
  * every mutating endpoint (POST, DELETE: tasks, individuals, collectives, job cancel) needs a `write` key;
  * POST /individuals/{id}/predictions changes nothing, but runs a model: any valid key (`read` or `write`);
  * GET endpoints are open.
`Settings.auth = False` (LEARNGENE_AUTH=off) turns all checks off, for local use only.

A token is never logged: only its sha256 is compared, and failures say why without echoing it.
"""
from __future__ import annotations

import hashlib
import logging
import math
import secrets
import threading
import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import ApiKey, utcnow
from service.problems import Problem
from service.settings import Settings

log = logging.getLogger("service.auth")
SCOPES = ("read", "write")
TOKEN_PREFIX = "lgk_"
REALM = 'Bearer realm="learngene"'

bearer = HTTPBearer(auto_error=False, description=(
    "an API key, sent as `Authorization: Bearer <key>`. Make one with `learngene keys create --scope write` "
    "(or `--scope read`), run with the same `LEARNGENE_DATA_DIR` as the service."))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_key(session: Session, scope: str, name: str = "", token: str | None = None) -> tuple[str, ApiKey]:
    """Store a new key (or the given token's hash) and return the token with its row; commit is the caller's."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    token = token or new_token()
    row = ApiKey(name=name, scope=scope, key_hash=hash_token(token), created_at=utcnow())
    session.add(row)
    session.flush()
    return token, row


def ensure_key(session: Session, token: str, scope: str = "write", name: str = "LEARNGENE_API_KEY") -> ApiKey:
    """Make sure this token is a live key (for LEARNGENE_API_KEY at start); a revoked one stays revoked."""
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_token(token)))
    if row is None:
        _, row = create_key(session, scope, name=name, token=token)
    return row


def lookup(session: Session, token: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_token(token), ApiKey.revoked_at.is_(None)))


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, type="unauthorized", headers={"WWW-Authenticate": REALM})


class RateLimiter:
    """Requests per minute per API key (per client address with auth off), as token buckets in this process:
    a burst of `per_minute` is allowed, then one request every 60/per_minute seconds."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, bucket: str, who: str, per_minute: int) -> float:
        """0 if the request may go now, else the seconds until it may."""
        if per_minute <= 0:
            return 0.0
        rate, now = per_minute / 60.0, time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get((bucket, who), (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[(bucket, who)] = (tokens, now)
                return (1.0 - tokens) / rate
            self._buckets[(bucket, who)] = (tokens - 1.0, now)
            return 0.0


def _rate_limit(request: Request, bucket: str | None, key: ApiKey | None) -> None:
    if bucket is None:
        return
    settings: Settings = request.app.state.settings
    per_minute = settings.rate_limit_writes if bucket == "writes" else settings.rate_limit_predictions
    who = f"key:{key.id}" if key is not None else f"addr:{request.client.host if request.client else '-'}"
    wait = request.app.state.rate_limiter.take(bucket, who, per_minute)
    if wait:
        raise Problem(429, "Too many requests", f"more than {per_minute} {bucket} per minute for this API key; "
                      "retry later", type="rate-limited", headers={"Retry-After": str(math.ceil(wait))})


def require(scope: str, bucket: str | None = None):
    """A dependency: the request must carry a live key whose scope covers `scope` ('read' < 'write');
    `bucket` ("writes", "predictions"): also counted against that key's rate limit (429 past it)."""

    def check(request: Request,
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> ApiKey | None:
        key = _authenticate(request, credentials, scope)
        _rate_limit(request, bucket, key)
        return key

    return Depends(check)


def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None, scope: str) -> ApiKey | None:
    settings: Settings = request.app.state.settings
    if not settings.auth:
        return None
    if credentials is None:
        sent = request.headers.get("authorization", "").strip()
        if sent:  # a key without its scheme (or another scheme): say what is missing, never echo the value
            raise _unauthorized("the Authorization header has no `Bearer` scheme: send "
                                "`Authorization: Bearer <key>` (the word Bearer, a space, then the key)")
        raise _unauthorized("this endpoint needs an API key: send `Authorization: Bearer <key>`")
    with request.app.state.sessions() as s:
        key = lookup(s, credentials.credentials)
        if key is not None:
            s.expunge(key)
    if key is None:
        raise _unauthorized("the API key is unknown or revoked")
    if scope == "write" and key.scope != "write":
        log.info("api key %s (scope %s) refused on %s %s", key.id, key.scope, request.method, request.url.path)
        raise Problem(403, "Forbidden", f"this endpoint needs a key with scope 'write'; key {key.id} has "
                      f"scope '{key.scope}'", type="insufficient-scope",
                      headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="write"'})
    return key


WRITE = require("write", "writes")
READ = require("read")
PREDICT = require("read", "predictions")
WriteKey = Annotated[ApiKey | None, WRITE]
