"""A bounded local copy of remote artifacts, least recently used out (one per API or worker host).

    cache = ArtifactCache(settings.artifact_cache, max_bytes=settings.artifact_cache_bytes)
    data = cache.get(digest)          # None when absent; a file that no longer hashes to its name is dropped
    cache.put(digest, data)           # atomic (temp + rename), then the oldest files go past max_bytes

Files are `root/ab/<sha256>` like the local store. "Recently used" is the file's mtime, touched on each hit,
so several processes on one host (Celery's prefork pool, the API) share one cache without a lock: a file a
neighbour evicts is simply fetched again, and a rename never exposes half a file. `max_bytes` 0 disables it.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from service.artifacts import check_digest, sha256

log = logging.getLogger("service.artifacts")


class ArtifactCache:
    def __init__(self, root: str | Path, max_bytes: int) -> None:
        self.root, self.max_bytes = Path(root), max(0, int(max_bytes))
        self.root.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = 0

    def path(self, digest: str) -> Path:
        return self.root / check_digest(digest)[:2] / digest

    def get(self, digest: str) -> bytes | None:
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.misses += 1
            return None
        if sha256(data) != digest:  # a disk fault: the store still has the good copy
            log.warning("cached artifact %s does not match its hash; dropped", digest)
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        try:
            os.utime(path)  # most recently used
        except FileNotFoundError:
            pass  # evicted by a neighbour in between: we have the bytes anyway
        self.hits += 1
        return data

    def put(self, digest: str, data: bytes) -> None:
        """Keep a copy (bytes already known to hash to `digest`); nothing if larger than the whole cache."""
        if not 0 < len(data) <= self.max_bytes:
            return
        final = self.path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.evict()

    def discard(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def files(self) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of every cached artifact, oldest first."""
        out = []
        for path in self.root.glob("??/*"):
            if path.name.startswith(".tmp-"):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            out.append((st.st_mtime, st.st_size, path))
        return sorted(out)

    def size(self) -> int:
        return sum(size for _, size, _ in self.files())

    def evict(self) -> None:
        """Remove least recently used files until the cache holds at most max_bytes."""
        files = self.files()
        total = sum(size for _, size, _ in files)
        for _, size, path in files:
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
