"""Weight downloads: safetensors bytes, checked against their sha256, with an ETag.

    return weights_response(store, row.weights_sha256, "individual-3.safetensors", request)
"""
from __future__ import annotations

import json

from fastapi import Request, Response

from service.artifacts import Store, sha256


def weights_response(store: Store, digest: str, filename: str, request: Request,
                     card: dict | None = None) -> Response:
    """The stored bytes; with `card`, the same tensors with the card's metadata added to the header."""
    if card is not None:
        blob = with_metadata(store.get(digest), {"model_card": json.dumps(card, default=str)})
        return Response(blob, media_type="application/octet-stream", headers={
            "Content-Disposition": f'attachment; filename="{filename}"', "X-Content-SHA256": sha256(blob),
            "X-Weights-SHA256": digest})
    etag = f'"{digest}"'
    # Content-addressed: the same hash is the same bytes, so a client's cached copy is always good.
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return Response(
        store.get(digest),  # re-hashed on read; a mismatch becomes a 500 problem, never bad bytes
        media_type="application/octet-stream",
        headers={"ETag": etag, "Content-Disposition": f'attachment; filename="{filename}"',
                 "X-Content-SHA256": digest},
    )


def with_metadata(blob: bytes, extra: dict[str, str]) -> bytes:
    """A safetensors file with `extra` added to its `__metadata__` (str -> str); the tensors are untouched.

    The header is an 8-byte little-endian length and JSON; tensor offsets count from the end of the
    header, so a longer header moves nothing. Padded with spaces to 8 bytes, as safetensors writes it."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    header["__metadata__"] = {**header.get("__metadata__", {}), **extra}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + blob[8 + n:]
