"""The S3 backend of the artifact store: one bucket shared by API and workers on any number of hosts.

    store = S3ArtifactStore.from_settings(settings)   # LEARNGENE_ARTIFACT_URL=s3://bucket/prefix
    sha = store.put(data)        # key prefix/ab/<sha256>; skipped when already there; SHA-256 checksum sent
    data = store.get(sha)        # local cache first (bounded, LRU), else S3; re-hashed either way

Endpoint and credentials come from the standard AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
and AWS_REGION variables (MinIO, Ceph, AWS itself). An S3 PUT, and a multipart upload's completion, is
atomic: a reader sees the whole object or none, and the object's name is its hash, so `get` can tell a
damaged one (ArtifactCorrupt). Transient failures (refused, timed out, 5xx, throttled) after boto3's own
retries raise ArtifactUnavailable; a missing key raises ArtifactMissing.
"""
from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from service.artifact_cache import ArtifactCache
from service.artifacts import ArtifactCorrupt, ArtifactMissing, ArtifactUnavailable, check_digest, sha256
from service.settings import Settings

MISSING = {"404", "NoSuchKey", "NotFound"}
THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
             "ServiceUnavailable", "InternalError"}


def parse_url(url: str) -> tuple[str, str]:
    """s3://bucket/some/prefix → ("bucket", "some/prefix")."""
    parts = urlparse(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"LEARNGENE_ARTIFACT_URL must look like s3://bucket/prefix, not {url!r}")
    return parts.netloc, parts.path.strip("/")


def make_client(timeout_s: float):
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=timeout_s, read_timeout=timeout_s, retries={"max_attempts": 3, "mode": "standard"},
                    s3={"addressing_style": "path"})  # path style: works with MinIO and any host name
    return boto3.session.Session().client(
        "s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        config=config)


@contextmanager
def translated(digest: str) -> Iterator[None]:
    """boto3's exceptions as the store's: missing, unavailable (worth retrying), or anything else as it is."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import (ClientError, ConnectionError, HTTPClientError, NoCredentialsError,
                                     ResponseStreamingError)

    try:
        yield
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in MISSING or status == 404:
            raise ArtifactMissing(f"artifact {digest} is missing") from e
        if status >= 500 or code in THROTTLED:
            raise ArtifactUnavailable(f"the artifact store answered {status} {code}") from e
        raise
    except (ConnectionError, HTTPClientError, ResponseStreamingError) as e:
        raise ArtifactUnavailable(f"the artifact store cannot be reached: {e}") from e
    except S3UploadFailedError as e:  # upload_file wraps what went wrong (refused, 5xx) in this
        raise ArtifactUnavailable(f"the artifact store refused an upload: {e}") from e
    except NoCredentialsError as e:
        raise ArtifactUnavailable("no credentials for the artifact store (AWS_ACCESS_KEY_ID ...)") from e


class S3ArtifactStore:
    def __init__(self, bucket: str, prefix: str, cache: ArtifactCache, staging_dir: Path, client=None,
                 timeout_s: float = 10.0, multipart_bytes: int = 64 * 1024**2) -> None:
        self.bucket, self.prefix, self.cache = bucket, prefix.strip("/"), cache
        self.client = client or make_client(timeout_s)
        self._staging = Path(staging_dir)
        self.multipart_bytes = multipart_bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> "S3ArtifactStore":
        bucket, prefix = parse_url(settings.artifact_url or "")
        cache = ArtifactCache(settings.artifact_cache, settings.artifact_cache_bytes)
        return cls(bucket, prefix, cache, settings.artifact_cache / ".staging", timeout_s=settings.artifact_timeout_s)

    def key(self, digest: str) -> str:
        name = f"{check_digest(digest)[:2]}/{digest}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def put(self, data: bytes) -> str:
        digest = sha256(data)
        if not self.exists(digest):  # idempotent: equal content is one object, written once
            checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
            with translated(digest):
                # S3 refuses the PUT if the bytes it received do not match the checksum.
                self.client.put_object(Bucket=self.bucket, Key=self.key(digest), Body=data,
                                       ChecksumSHA256=checksum)
        self.cache.put(digest, data)
        return digest

    def get(self, digest: str) -> bytes:
        cached = self.cache.get(digest)
        if cached is not None:
            return cached
        with translated(digest):
            data = self.client.get_object(Bucket=self.bucket, Key=self.key(digest))["Body"].read()
        if sha256(data) != digest:
            raise ArtifactCorrupt(f"artifact {digest} does not match its hash")
        self.cache.put(digest, data)
        return data

    def exists(self, digest: str) -> bool:
        try:
            with translated(digest):
                self.client.head_object(Bucket=self.bucket, Key=self.key(digest))
            return True
        except ArtifactMissing:
            return False

    def delete(self, digest: str) -> None:
        self.cache.discard(digest)
        with translated(digest):
            self.client.delete_object(Bucket=self.bucket, Key=self.key(digest))

    @property
    def staging(self) -> Path:
        """A local folder for uploads while they arrive; `adopt` sends them to the bucket and removes them."""
        self._staging.mkdir(parents=True, exist_ok=True)
        return self._staging

    def adopt(self, path: Path, digest: str) -> str:
        """Store a file already hashed to `digest` (service.uploads.stage_upload); multipart past
        `multipart_bytes`, each part checksummed. The local file is removed either way."""
        from boto3.s3.transfer import TransferConfig

        try:
            if not self.exists(digest):
                config = TransferConfig(multipart_threshold=self.multipart_bytes,
                                        multipart_chunksize=self.multipart_bytes, use_threads=False)
                with translated(digest):
                    self.client.upload_file(str(path), self.bucket, self.key(digest), Config=config,
                                            ExtraArgs={"ChecksumAlgorithm": "SHA256"})
        finally:
            Path(path).unlink(missing_ok=True)
        return digest
