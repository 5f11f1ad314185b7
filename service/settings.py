"""All service settings, read from the environment (prefix `LEARNGENE_`) in one place.

    settings = Settings()                      # LEARNGENE_DATA_DIR, LEARNGENE_DATABASE_URL, ...
    settings = Settings(data_dir="/tmp/lg")    # tests pass values directly

Unset URLs fall back to the embedded default: a SQLite file, an artifact folder and an on-disk
Celery broker, all under `data_dir`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# learngene.model.PRESETS' names, spelled out so that settings load without torch (a unit test keeps them equal).
PRESET_NAMES = ("paper", "small", "tiny", "wide")


def find_data_dir(start: Path | None = None) -> Path:
    """The default data folder: the nearest `var/` holding a registry, from here up; else `./var`.

    Every command resolves it this way (serve, api, worker, migrate, keys), so `learngene keys ...` run
    from a subfolder of the service's folder finds the service's registry instead of making a new one."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "var" / "registry.sqlite3").is_file():
            return folder / "var" if folder != here else Path("var")
    return Path("var")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEARNGENE_", env_file=None, extra="ignore")

    # Where things live.
    data_dir: Path = Field(default_factory=find_data_dir,
                           description="default: the nearest ./var holding a registry, from here up; else ./var")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite file in data_dir")
    broker_url: str | None = Field(None, description="Celery broker; default: on-disk broker in data_dir")
    artifact_dir: Path | None = Field(None, description="weights and datasets; default: data_dir/artifacts")
    artifact_url: str | None = Field(
        None, description="s3://bucket/prefix: artifacts in S3-compatible storage (endpoint and credentials from "
        "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION); default: the artifact_dir folder")
    artifact_cache_dir: Path | None = Field(None, description="local cache of an S3 store; default: "
                                            "data_dir/artifact-cache")
    artifact_cache_bytes: int = Field(2 * 1024**3, ge=0, description="most bytes the local cache of an S3 store "
                                      "holds (least recently used out; 0: no cache)")
    artifact_timeout_s: float = Field(10.0, gt=0, description="connect and read time-out of one S3 request")
    store_retry_s: float = Field(5.0, gt=0, description="a job that found the artifact store unreachable is queued "
                                 "again after this (doubled per attempt, up to max_attempts runs)")
    redis_key_prefix: str = Field("", description="prefix for every Redis key (lets deployments share one Redis)")

    # HTTP.
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_bytes: int = Field(256 * 1024**2, description="a request body above this is refused with 413")
    max_inflated_bytes: int = Field(512 * 1024**2, description="an archive (.npz or .zip) declaring more "
                                    "unpacked bytes than this is refused before anything is inflated")
    max_inflation_ratio: float = Field(200.0, description="an archive member compressed more than this is refused")
    max_concurrent_uploads: int = Field(8, ge=1, description="dataset uploads handled at once; more wait")
    upload_wait_s: float = Field(60.0, ge=0, description="how long an upload waits for a slot (body unread) "
                                 "before a 503")
    page_size: int = 50
    max_page_size: int = 500
    retry_after_s: int = Field(2, description="Retry-After sent while a job is queued or running")
    model_cache_size: int = Field(8, description="individual models kept loaded for predictions")
    events_poll_s: float = Field(0.5, gt=0, description="how often GET /jobs/{id}/events reads the job (no pub/sub)")

    # Events (service/events.py): pushed through Redis pub/sub when the broker is Redis.
    max_event_streams: int = Field(256, ge=1, description="open GET /jobs/{id}/events streams; more get 503")

    # Predictions (service/predict.py): a bounded pool batching concurrent requests.
    predict_threads: int = Field(1, ge=1, description="threads running prediction batches")
    predict_queue: int = Field(64, ge=1, description="prediction requests waiting at most; more get 503")
    predict_batch: int = Field(256, ge=1, description="most images in one batched forward pass")
    predict_batch_wait_s: float = Field(
        0.0, ge=0, description="how long a batch waits for more requests (0: it takes those already waiting, "
        "which adds no latency when idle and batches under load)")

    # Rate limits per API key (service/auth.py): requests per minute, 0 = unlimited.
    rate_limit_writes: int = Field(0, ge=0, description="mutating requests per minute per API key (0: off)")
    rate_limit_predictions: int = Field(0, ge=0, description="prediction requests per minute per key (0: off)")

    # API keys (service/auth.py).
    auth: bool = Field(True, description="require API keys on mutating endpoints; LEARNGENE_AUTH=off for local use only")
    api_key: SecretStr | None = Field(None, description="a write key registered at start (for automation); never logged")

    # Datasets.
    max_samples: int = 200_000
    max_image_side: int = 1024
    max_input_size: int = Field(128, description="a collective made by an upload is at most this many pixels a side")
    task_min_per_class: int = Field(2, description="samples per class a task upload needs (held-out split)")

    # The method.
    default_collective: str = "default"
    preset: Literal[PRESET_NAMES] = Field(
        "small", description="preset of a collective the first task creates: small, or wide on GPU workers (3.3 x the "
        "CPU time per step; run W1, docs/benchmark.md)")
    seed: int = 0
    extract_method: str = Field("auto", description="learngene choice: auto (the library default), gradient, validated")
    extract_k: int = Field(3, description="block length of the gradient criterion, and of the K-blocks the validated "
                           "choice tries beside every prefix")

    # Queue and workers.
    visibility_timeout_s: int = Field(
        7 * 24 * 3600, description="Redis redelivers an unacknowledged job after this; longer than any job"
    )
    worker_heartbeat_s: float = Field(5.0, description="how often a worker records that it is alive")
    progress_interval_s: float = Field(0.5, description="least time between two progress writes of one job")
    worker_concurrency: int = Field(1, description="training processes per worker (one per GPU is the rule)")
    worker_queues: str = Field("grow,individuals", description="queues the worker started by this settings consumes")
    job_heartbeat_s: float = Field(5.0, description="how often a running job records that it is alive")
    job_timeout_s: float = Field(
        60.0, description="a running job silent this long lost its worker: the reaper requeues or fails it")
    reaper_interval_s: float = Field(15.0, description="how often each worker looks for such jobs")
    max_attempts: int = Field(3, ge=1, description="runs a job gets before a lost worker fails it")
    job_stall_s: float = Field(
        1800.0, ge=0, description="a running job that reports no progress this long (its process alive) is failed; "
        "0: never")
    republish_after_s: float = Field(
        120.0, gt=0, description="a job queued this long with nobody claiming it has its message sent again")
    grow_time_limit_s: int = Field(6 * 3600, ge=1, description="Celery hard time limit of a grow job")
    individual_time_limit_s: int = Field(3600, ge=1, description="Celery hard time limit of an individual job")
    grow_lease_poll_s: float = Field(1.0, gt=0, description="how often a grow job waiting for its collective looks")
    ddp_processes: str = Field(
        "1", pattern=r"^\s*(auto|[1-9][0-9]*)\s*$", description="processes training the collective data-parallel "
        "in one grow job (learngene/distributed.py): 1 = off, N (gloo on CPU, NCCL with one per GPU), auto = one "
        "per visible GPU")
    ddp_timeout_s: float = Field(600.0, gt=0, description="a data-parallel rank waiting this long in a collective "
                                 "operation gives up (its peers died without the worker noticing)")
    torch_threads: int = Field(
        1, ge=0, description="CPU threads per process for torch (0: torch's default). One is right when API and "
        "worker share a few cores: torch's spinning threads collapse when the machine is oversubscribed")

    @property
    def data_dir_origin(self) -> str:
        """Where data_dir came from, in words: `/abs/var, from LEARNGENE_DATA_DIR` and the like."""
        if "data_dir" in self.model_fields_set:
            how = "from LEARNGENE_DATA_DIR or --data-dir"
        elif self.data_dir.is_absolute():
            how = "the nearest var/ with a registry above this folder"
        else:
            how = "the default ./var"
        return f"{self.data_dir.resolve()}, {how}"

    @property
    def database(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'registry.sqlite3').resolve()}"

    @property
    def artifacts(self) -> Path:
        return (self.artifact_dir or self.data_dir / "artifacts").resolve()

    @property
    def artifact_cache(self) -> Path:
        return (self.artifact_cache_dir or self.data_dir / "artifact-cache").resolve()

    @property
    def broker(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_folder(self) -> Path:
        return (self.data_dir / "broker").resolve()

    @property
    def embedded_broker(self) -> bool:
        return self.broker.startswith("filesystem:")

    def apply_torch_threads(self) -> None:
        """Set torch's intra-op thread count for this process (call once, before the first model runs)."""
        if self.torch_threads:
            import torch

            torch.set_num_threads(self.torch_threads)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
