"""Reading uploads: size-limited bodies, datasets and images, with problem+json on anything wrong.

    staged = stage_upload(file, settings, store)            # to disk, hashed while copied; 413 above the limit
    ds = parse_dataset(staged.path, file.filename, settings)  # 422 with the reader's message
    data = read_upload(file, settings)                      # small bodies (predictions): bytes
    app.add_middleware(BodyLimit, max_bytes=...)            # refuses a too-large body before it is read
    app.add_middleware(UploadSlots, slots=...)              # 503 + Retry-After past N uploads at once

Archives are checked before anything is inflated (learngene.data.check_npz / check_archive): declared sizes,
compression ratio, and each array's header.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from learngene.data import DatasetError, Limits, TaskDataset, decode_image, load_dataset, load_images_npz
from service.artifacts import Store
from service.problems import PROBLEM_JSON, Problem
from service.settings import Settings

CHUNK = 1 << 20
# What the file fields take, for the OpenAPI document and the error messages.
DATASET_FILE = ("a labelled dataset: an .npz with `x` (N, H, W[, C] uint8) and `y` (labels), or a .zip of "
                "`class_name/image` files; not empty")
IMAGE_FORMATS = "PNG, JPEG, GIF, BMP, TIFF or WebP"
IMAGES_FILE = f"images to classify: an .npz with `x` (N, H, W[, C] uint8), or one image ({IMAGE_FORMATS}); not empty"
MAX_FILENAME = 200  # a task is named after its file: Task.name is String(200)


def limits(settings: Settings) -> Limits:
    return Limits(max_samples=settings.max_samples, max_side=settings.max_image_side,
                  max_zip_uncompressed=settings.max_inflated_bytes, max_zip_ratio=settings.max_inflation_ratio)


@dataclass
class StagedUpload:
    """An upload copied to the store's staging folder; `store.adopt` stores it under its hash."""

    path: Path
    sha256: str
    size: int

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def check_filename(name: str | None, what: str = "file") -> None:
    if name is not None and len(name) > MAX_FILENAME:
        raise Problem(422, "Invalid filename", f"{what}: the file name has {len(name)} characters, more than "
                      f"{MAX_FILENAME}", type="invalid-filename")


def stage_upload(file: UploadFile, settings: Settings, store: Store) -> StagedUpload:
    """Copy the (already spooled) upload to disk in chunks, hashing as it goes; 413 past the limit."""
    check_filename(file.filename)
    folder = store.staging
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="upload-")
    digest, total = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in _chunks(file, settings):
                total += len(chunk)
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return StagedUpload(Path(tmp), digest.hexdigest(), total)


def too_large(max_bytes: int) -> Problem:
    return Problem(413, "Upload too large", f"the request body exceeds the limit of {max_bytes} bytes",
                   type="upload-too-large")


def _chunks(file: UploadFile, settings: Settings) -> Iterator[bytes]:
    """The uploaded file (already spooled by the form parser) chunk by chunk; 413 past the limit."""
    file.file.seek(0)
    total = 0
    while chunk := file.file.read(CHUNK):
        total += len(chunk)
        if total > settings.max_upload_bytes:
            raise too_large(settings.max_upload_bytes)
        yield chunk


def read_upload(file: UploadFile, settings: Settings) -> bytes:
    """A small upload's bytes (predictions), refused above the limit."""
    return b"".join(_chunks(file, settings))


def parse_dataset(data: bytes | Path, filename: str | None, settings: Settings, what: str = "file",
                  min_classes: int = 2, min_per_class: int = 1) -> TaskDataset:
    try:
        return load_dataset(data, filename=filename, limits=limits(settings)).require(min_classes, min_per_class)
    except DatasetError as e:
        raise Problem(422, "Invalid dataset", f"{what}: {e}", type="invalid-dataset") from e


def parse_images(data: bytes, filename: str | None, settings: Settings) -> np.ndarray:
    """An `.npz` with `x`, or one encoded image → uint8 (N, H, W, C)."""
    name = repr(filename) if filename else "the uploaded file"
    if not data:
        raise Problem(422, "Invalid images", f"{name} is empty", type="invalid-images")
    if data[:4] != b"PK\x03\x04" and not _looks_like_image(data):
        raise Problem(422, "Invalid images", f"{name} is neither an .npz with an `x` array nor an image: send an "
                      f".npz or one image file ({IMAGE_FORMATS})", type="invalid-images")
    try:
        if data[:4] == b"PK\x03\x04":
            return load_images_npz(data, limits(settings))
        return decode_image(data, limits(settings))[None]
    except DatasetError as e:
        raise Problem(422, "Invalid images", f"{name}: {e}", type="invalid-images") from e


def _looks_like_image(data: bytes) -> bool:
    """Whether Pillow recognises the format (without decoding): the error can then say what was sent."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)):
            return True
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return False
    except Image.DecompressionBombError:
        return True  # an image; decode_image says it is too large


class BodyLimit:
    """ASGI middleware: 413 for a body over `max_bytes`, judged by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(scope, send)
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # A Problem is an HTTPException: FastAPI's body parsing re-raises it as it is.
                    raise too_large(self.max_bytes)
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        problem = too_large(self.max_bytes)
        body = json.dumps({"type": problem.type, "title": problem.title, "status": 413,
                           "detail": problem.detail, "instance": scope.get("path")}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class UploadSlots:
    """ASGI middleware: at most `slots` dataset uploads (multipart POSTs other than predictions) at once, each
    spooled to disk and parsed. One more waits up to `wait_s` for a slot with its body unread (TCP holds the
    client back, so waiting costs no memory), then is answered 503 with Retry-After."""

    def __init__(self, app: ASGIApp, slots: int, wait_s: float = 0.0, retry_after_s: int = 5) -> None:
        self.app, self.wait_s, self.retry_after_s = app, wait_s, retry_after_s
        self.slots = threading.BoundedSemaphore(max(1, slots))

    async def _acquire(self) -> bool:
        deadline = time.monotonic() + self.wait_s
        while not self.slots.acquire(blocking=False):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)  # polled: the semaphore is shared by whatever event loops serve the app
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_upload(scope):
            return await self.app(scope, receive, send)
        if not await self._acquire():
            body = json.dumps({"type": "/problems/too-many-uploads", "title": "Too many uploads", "status": 503,
                               "detail": "the service is taking as many uploads as it can; retry shortly",
                               "instance": scope.get("path")}).encode()
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", PROBLEM_JSON.encode()),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"retry-after", str(self.retry_after_s).encode()), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.release()


def _is_upload(scope: Scope) -> bool:
    if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].endswith("/predictions"):
        return False
    return dict(scope["headers"]).get(b"content-type", b"").startswith(b"multipart/form-data")
