"""Weight downloads: safetensors bytes, checked against their sha256, with an ETag.

    return weights_response(store, row.weights_sha256, "individual-3.safetensors", request)
"""
from __future__ import annotations

from fastapi import Request, Response

from service.artifacts import ArtifactStore


def weights_response(store: ArtifactStore, digest: str, filename: str, request: Request) -> Response:
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
