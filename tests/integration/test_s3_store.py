"""The S3 backend of the artifact store, through boto3 against moto's S3 server over real HTTP: content
addressing, idempotent puts, damaged objects caught, the bounded local cache, and a store that cannot be
reached (refused, frozen) raising the retryable ArtifactUnavailable."""
from __future__ import annotations

import os

import pytest

from service.artifact_cache import ArtifactCache
from service.artifacts import ArtifactCorrupt, ArtifactMissing, ArtifactUnavailable, open_store, sha256
from service.s3store import S3ArtifactStore, parse_url
from service.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def aws_env(monkeypatch):
    def apply(server) -> None:
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)

    return apply


def make_store(server, aws_env, tmp_path, bucket: str, cache_bytes: int = 1 << 20, name: str = "cache",
               **settings) -> S3ArtifactStore:
    aws_env(server)
    store = open_store(Settings(data_dir=tmp_path / name, artifact_url=f"s3://{bucket}/lg/artifacts",
                                artifact_cache_bytes=cache_bytes, **settings))
    assert isinstance(store, S3ArtifactStore)
    return store


def test_put_get_exists_delete_by_content(s3_server, aws_env, tmp_path):
    bucket = s3_server.bucket()
    store = make_store(s3_server, aws_env, tmp_path, bucket)
    data = os.urandom(5000)
    digest = store.put(data)
    assert digest == sha256(data)
    # The object's key is its hash under the prefix; its bytes are the artifact's.
    head = s3_server.client().get_object(Bucket=bucket, Key=f"lg/artifacts/{digest[:2]}/{digest}")
    assert head["Body"].read() == data
    assert store.put(data) == digest  # idempotent: equal content, one object
    listed = s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == [f"lg/artifacts/{digest[:2]}/{digest}"]
    assert store.exists(digest) and store.get(digest) == data
    store.delete(digest)
    assert not store.exists(digest)
    with pytest.raises(ArtifactMissing):
        store.get(digest)


def test_an_empty_cache_reads_from_s3_and_keeps_a_copy(s3_server, aws_env, tmp_path):
    bucket = s3_server.bucket()
    writer = make_store(s3_server, aws_env, tmp_path, bucket, name="api")
    data = os.urandom(3000)
    digest = writer.put(data)
    reader = make_store(s3_server, aws_env, tmp_path, bucket, name="worker")  # another host: its cache is empty
    assert not reader.cache.path(digest).exists()
    assert reader.get(digest) == data
    assert reader.cache.misses == 1 and reader.cache.path(digest).read_bytes() == data
    assert reader.get(digest) == data and reader.cache.hits == 1


def test_a_damaged_object_is_detected_and_never_cached(s3_server, aws_env, tmp_path):
    bucket = s3_server.bucket()
    store = make_store(s3_server, aws_env, tmp_path, bucket, cache_bytes=0)
    digest = store.put(b"the real weights")
    s3_server.client().put_object(Bucket=bucket, Key=store.key(digest), Body=b"something else")  # bit rot
    with pytest.raises(ArtifactCorrupt):
        store.get(digest)
    assert not store.cache.path(digest).exists()


def test_a_damaged_cache_file_is_dropped_and_fetched_again(s3_server, aws_env, tmp_path):
    store = make_store(s3_server, aws_env, tmp_path, s3_server.bucket())
    digest = store.put(b"model bytes " * 100)
    store.cache.path(digest).write_bytes(b"torn")
    assert store.get(digest) == b"model bytes " * 100
    assert store.cache.path(digest).read_bytes() == b"model bytes " * 100


def test_the_cache_stays_within_its_bound_least_recently_used_out(s3_server, aws_env, tmp_path):
    store = make_store(s3_server, aws_env, tmp_path, s3_server.bucket(), cache_bytes=2500)
    blobs = [os.urandom(1000) for _ in range(3)]
    first, second = store.put(blobs[0]), store.put(blobs[1])
    os.utime(store.cache.path(first), (1, 1))  # used long ago ...
    os.utime(store.cache.path(second), (2, 2))
    assert store.get(first) == blobs[0]  # ... until now: `second` is the least recently used
    third = store.put(blobs[2])
    assert store.cache.size() <= 2500
    assert store.cache.path(first).exists() and store.cache.path(third).exists()
    assert not store.cache.path(second).exists()
    assert store.get(second) == blobs[1]  # evicted from the cache, never from the bucket


def test_cache_writes_are_atomic_and_bigger_than_the_cache_is_not_kept(tmp_path):
    cache = ArtifactCache(tmp_path, max_bytes=100)
    big = os.urandom(101)
    cache.put(sha256(big), big)
    assert cache.get(sha256(big)) is None and cache.size() == 0
    small = b"x" * 10
    cache.put(sha256(small), small)
    assert not [p for p in tmp_path.rglob(".tmp-*")]
    assert cache.get(sha256(small)) == small


def test_an_upload_is_staged_locally_then_stored_and_the_stage_removed(s3_server, aws_env, tmp_path):
    bucket = s3_server.bucket()
    store = make_store(s3_server, aws_env, tmp_path, bucket)
    store.multipart_bytes = 5 * 1024**2  # S3's smallest part: this upload goes in two parts
    data = os.urandom(6 * 1024**2)
    staged = store.staging / "upload-1"
    staged.write_bytes(data)
    digest = store.adopt(staged, sha256(data))
    assert not staged.exists()
    head = s3_server.client().head_object(Bucket=bucket, Key=store.key(digest))
    assert "-2" in head["ETag"]  # a multipart object's ETag names its part count
    assert store.get(digest) == data


def test_unreachable_store_raises_the_retryable_error_then_recovers(s3_private, aws_env, tmp_path):
    store = make_store(s3_private, aws_env, tmp_path, s3_private.bucket(), artifact_timeout_s=1)
    digest = store.put(b"kept")
    s3_private.pause()  # frozen: connections hang, requests time out
    try:
        with pytest.raises(ArtifactUnavailable):
            store.exists(digest)
        with pytest.raises(ArtifactUnavailable):
            store.put(b"new bytes")
    finally:
        s3_private.resume()
    assert store.exists(digest) and store.put(b"new bytes") == sha256(b"new bytes")
    s3_private.stop()  # gone: connection refused
    with pytest.raises(ArtifactUnavailable):
        store.get(sha256(b"never stored"))


def test_the_url_names_bucket_and_prefix():
    assert parse_url("s3://models/prod/lg") == ("models", "prod/lg")
    assert parse_url("s3://models") == ("models", "")
    with pytest.raises(ValueError):
        parse_url("/srv/artifacts")


def test_a_put_carries_the_sha256_checksum_s3_checks(s3_server, aws_env, tmp_path):
    # S3 and MinIO refuse a PUT whose bytes do not match this header; moto does not check it, so the test
    # looks at what is sent.
    import base64
    import hashlib

    store = make_store(s3_server, aws_env, tmp_path, s3_server.bucket())
    sent: list[str] = []
    store.client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent.append(request.headers.get("x-amz-checksum-sha256")))
    data = os.urandom(2000)
    store.put(data)
    assert sent == [base64.b64encode(hashlib.sha256(data).digest())]
