"""Content-addressed artifact store: weights (safetensors) and uploaded datasets, named by sha256.

    store = ArtifactStore(settings.artifacts)
    sha = store.put(collective.to_bytes())      # atomic: temp file, fsync, rename
    data = store.get(sha)                       # re-hashes; raises ArtifactCorrupt on a mismatch

A file appears under its final name only once complete, so no reader ever sees half an artifact.
Equal content is stored once.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class ArtifactMissing(FileNotFoundError):
    """No artifact with that hash."""


class ArtifactCorrupt(IOError):
    """The bytes on disk no longer hash to their name."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        return self.root / digest[:2] / digest

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
