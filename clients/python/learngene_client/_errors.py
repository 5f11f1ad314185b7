"""The errors the client raises: one readable line each, so a command line can print str(error) as it is."""
from __future__ import annotations

import httpx


class LearngeneError(Exception):
    """Base class of every error this client raises on purpose."""


class ApiError(LearngeneError):
    """The service answered with an error (an RFC 9457 problem, or a bare HTTP error).

        try: client.get_job(99)
        except ApiError as e: e.status, e.title, e.detail, e.type   # 404, 'Not Found', 'job 99 does not exist', ...
    """

    def __init__(self, status: int, title: str, detail: str | None = None, type: str = "about:blank") -> None:
        self.status, self.title, self.detail, self.type = status, title, detail, type
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}" if self.detail else f"{self.status} {self.title}"

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        """Read a problem+json body; any other error body is summed up by its status line and first text."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "title" in body:
            return cls(response.status_code, str(body["title"]), body.get("detail"), body.get("type", "about:blank"))
        text = " ".join(response.text.split())[:200] or None
        return cls(response.status_code, response.reason_phrase or "HTTP error", text)


class ConnectionFailed(LearngeneError):
    """The service could not be reached, or the connection broke before an answer came.

        ConnectionFailed("http://127.0.0.1:8000", httpx.ConnectError("[Errno 111] Connection refused"))
        # cannot reach http://127.0.0.1:8000: [Errno 111] Connection refused
    """

    def __init__(self, url: str, cause: httpx.TransportError) -> None:
        self.url = url
        reason = str(cause) or type(cause).__name__
        verb = "cannot reach" if isinstance(cause, (httpx.ConnectError, httpx.ConnectTimeout)) else "lost"
        super().__init__(f"{verb} {url}: {reason}" if verb == "cannot reach"
                         else f"{verb} the connection to {url}: {reason}")
