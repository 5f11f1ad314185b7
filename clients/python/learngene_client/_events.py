"""Server-sent events: the wire format parser, and the typed events of a job stream.

    for event in parse_sse(response.iter_lines()):     # ServerSentEvent(event, data, id)
        ...

The parser follows the HTML standard's event-stream rules: `field: value` lines, one leading space of the
value dropped, `data` lines joined with newlines, lines starting with `:` are comments, a blank line ends
an event, an event without data is not dispatched, and the last `id` carries over to later events.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from learngene_client.models import JobPublic


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None = None


def parse_sse(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Events from the lines of a `text/event-stream` body (line endings already stripped)."""
    event, data, last_id = "", [], None
    for line in lines:
        line = line.rstrip("\r\n")
        if not line:
            if data:
                yield ServerSentEvent(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):  # a comment: keepalives
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value
        # `retry` and unknown fields are ignored: this client does not reconnect by itself.
    # A stream that ends without a blank line leaves its last event incomplete: the standard drops it.


JobEventName = Literal["status", "progress", "end"]


@dataclass(frozen=True)
class JobEvent:
    """One event of GET /jobs/{id}/events: what changed (`status`, `progress`, or `end`) and the job after it."""

    event: JobEventName
    job: JobPublic
    id: str | None = None
