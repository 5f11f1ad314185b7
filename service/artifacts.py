"""Content-addressed artifact store: weights (safetensors) and uploaded datasets, named by sha256.

    store = open_store(settings)                # LEARNGENE_ARTIFACT_URL: unset → this folder; s3://... → S3
    sha = store.put(collective.to_bytes())      # atomic: temp file, fsync, rename (S3: one PUT, checksummed)
    data = store.get(sha)                       # re-hashes; raises ArtifactCorrupt on a mismatch

Two backends with one shape (`Store`: put, get, exists, delete, staging, adopt): `ArtifactStore`, the local
folder below (the embedded default), and `service.s3store.S3ArtifactStore` for workers on several hosts.
A file appears under its final name only once complete, so no reader ever sees half an artifact.
Equal content is stored once. A store that cannot be reached raises `ArtifactUnavailable`: jobs retry
(workers/jobrun.py), the API answers 503.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from service.settings import Settings


class ArtifactMissing(FileNotFoundError):
    """No artifact with that hash."""


class ArtifactCorrupt(IOError):
    """The bytes on disk no longer hash to their name."""


class ArtifactUnavailable(ConnectionError):
    """The store cannot be reached now (connection refused, time-out, a 5xx): try again later."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    return digest


class Store(Protocol):
    """What every backend offers; routers, jobs and workers use nothing else."""

    def put(self, data: bytes) -> str: ...
    def get(self, digest: str) -> bytes: ...
    def exists(self, digest: str) -> bool: ...
    def delete(self, digest: str) -> None: ...
    def adopt(self, path: Path, digest: str) -> str: ...

    @property
    def staging(self) -> Path: ...


def open_store(settings: "Settings") -> Store:
    """The backend the settings name: `artifact_url` s3://bucket/prefix → S3 (with a local cache), else the
    local folder `settings.artifacts`."""
    if settings.artifact_url:
        from service.s3store import S3ArtifactStore

        return S3ArtifactStore.from_settings(settings)
    return ArtifactStore(settings.artifacts)


class ArtifactStore:
    """The local folder backend: `root/ab/<sha256>`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / check_digest(digest)[:2] / digest

    def put(self, data: bytes) -> str:
        digest = sha256(data)
        final = self.path(digest)
        if final.exists():
            return digest
        final.parent.mkdir(parents=True, exist_ok=True)
        # The temp file sits in the same folder so the rename is atomic (same file system).
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    @property
    def staging(self) -> Path:
        """Where uploads are written while they arrive (same file system, so `adopt` is a rename)."""
        folder = self.root / ".staging"
        folder.mkdir(exist_ok=True)
        return folder

    def adopt(self, path: Path, digest: str) -> str:
        """Move a file already hashed to `digest` (see service.uploads.stage_upload) under its name."""
        final = self.path(digest)
        if final.exists():
            Path(path).unlink(missing_ok=True)
            return digest
        final.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(path, final)
        return digest

    def get(self, digest: str) -> bytes:
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError as e:
            raise ArtifactMissing(f"artifact {digest} is missing") from e
        if sha256(data) != digest:
            raise ArtifactCorrupt(f"artifact {digest} does not match its hash")
        return data

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()

    def delete(self, digest: str) -> None:
        """Remove an artifact no row uses (a failed request's upload, a deleted individual's weights)."""
        self.path(digest).unlink(missing_ok=True)
