"""Reading uploads: size-limited bodies, datasets and images, with problem+json on anything wrong.

    data = read_upload(file, settings)                      # 413 above LEARNGENE_MAX_UPLOAD_BYTES
    ds = parse_dataset(data, file.filename, settings)       # 422 with the reader's message
    app.add_middleware(BodyLimit, max_bytes=...)            # refuses a too-large body before it is read
"""
from __future__ import annotations

import json

import numpy as np
from fastapi import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from learngene.data import DatasetError, Limits, TaskDataset, decode_image, load_dataset, load_images_npz
from service.problems import PROBLEM_JSON, Problem
from service.settings import Settings

CHUNK = 1 << 20
# What the file fields take, for the OpenAPI document and the error messages.
DATASET_FILE = ("a labelled dataset: an .npz with `x` (N, H, W[, C] uint8) and `y` (labels), or a .zip of "
                "`class_name/image` files; not empty")
IMAGE_FORMATS = "PNG, JPEG, GIF, BMP, TIFF or WebP"
IMAGES_FILE = f"images to classify: an .npz with `x` (N, H, W[, C] uint8), or one image ({IMAGE_FORMATS}); not empty"


def limits(settings: Settings) -> Limits:
    return Limits(max_samples=settings.max_samples, max_side=settings.max_image_side)


def too_large(max_bytes: int) -> Problem:
    return Problem(413, "Upload too large", f"the request body exceeds the limit of {max_bytes} bytes",
                   type="upload-too-large")


def read_upload(file: UploadFile, settings: Settings) -> bytes:
    """The uploaded file's bytes (already spooled by the form parser), refused above the limit."""
    chunks, total = [], 0
    file.file.seek(0)
    while chunk := file.file.read(CHUNK):
        total += len(chunk)
        if total > settings.max_upload_bytes:
            raise too_large(settings.max_upload_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_dataset(data: bytes, filename: str | None, settings: Settings, what: str = "file",
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
