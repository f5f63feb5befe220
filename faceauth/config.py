"""Settings for both services, read from the environment (and an optional `.env`).

Every value is validated when a service starts: a bad one stops start-up with a message that names
the environment variable, instead of surfacing later as a wrong answer.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

FACE_PACKS = ("buffalo_s", "buffalo_l", "antelopev2", "auraface")

# Cosine similarity above which two faces are taken as the same person, for the default model (buffalo_s,
# w600k_mbf). Chosen from the labelled pairs: see docs/THRESHOLDS.md before changing it.
DEFAULT_MATCH_THRESHOLD = 0.35
# Each model profile's calibrated match threshold (cosine), which `faceauth up` gives the Face API unless
# FACEAUTH_MILVUS_SEARCH_THRESHOLD is set (docs/MODELS.md, measured with `python -m bench.calibrate`).
PROFILE_MATCH_THRESHOLDS = {"default": DEFAULT_MATCH_THRESHOLD, "permissive": 0.92}


def Probability(default: float):  # reads as a type in the field declarations
    return Field(default=default, ge=0.0, le=1.0)


class MLSettings(BaseSettings):
    """The ML inference service (`ML_SERVICE_*`)."""

    model_config = SettingsConfigDict(env_prefix="ML_SERVICE_", env_file=".env", extra="ignore")

    host: str = "0.0.0.0"
    port: int = Field(default=8001, ge=1, le=65535)
    ml_device: str = "cpu"
    auth_token: str | None = None
    # `faceauth ml` on a non-loopback host refuses to start without auth_token unless this is true (a network policy
    # or a private network guards the port instead; docs/SECURITY.md).
    allow_unauthenticated: bool = False
    # One JSON object per log line, or plain text. Read by the `faceauth` CLI when it sets up logging (before
    # settings load); declared here so an invalid value stops start-up and the variable is documented.
    log_format: Literal["json", "text"] = "json"

    # Where model packs live (InsightFace layout: <model_dir>/<pack>/*.onnx) and where fetched models go.
    model_dir: Path = Path("data/models")
    # A model that no package ships (MiniFASNet) is downloaded once, checksummed, on first start.
    auto_fetch: bool = True

    # Which model set the service loads (docs/MODELS.md): "default" (the face pack of ML_SERVICE_FACE_MODEL,
    # InsightFace's research-only weights unless you set another pack, and NudeNet, AGPL-3.0) or "permissive"
    # (dlib's CC0 detector landmarks and 128-d descriptor, MiniFASNet, the built-in blur classifier, no NSFW
    # model unless you give one: every file allows commercial use and none is copyleft).
    model_profile: Literal["default", "permissive"] = "default"
    face_model: str = "buffalo_s"
    # The dimension the embedder must make; unset: whatever the profile's embedder makes (512, dlib 128).
    face_embedding_dim: int | None = Field(default=None, ge=64, le=4096)
    face_detection_width: int = Field(default=640, ge=64, le=2048)
    face_detection_height: int = Field(default=640, ge=64, le=2048)
    face_detection_threshold: float = Field(default=0.5, ge=0.05, le=1.0)
    # Looking for the subject face, the detector first runs at this (cheaper) size and keeps the result when
    # the largest face is clearly big enough; otherwise it runs again at the full detection size. /v1/detect
    # always uses the full size. 0 turns the first pass off.
    face_detection_coarse_size: int = Field(default=320, ge=0, le=2048)
    face_area_threshold: float = Field(default=0.01, ge=0.0, le=1.0)
    # "largest": judge the largest face and report the others; "reject": more than one face fails assessment.
    multiple_faces_policy: Literal["largest", "reject"] = "largest"
    # faces=all on /v1/analyze: at most this many faces (largest first) are checked and embedded.
    max_faces: int = Field(default=20, ge=1, le=200)
    # int8 copies of the face pack's models, made once by `faceauth models quantize` into model_dir. An int8
    # embedder has its own model_id: its vectors are not comparable with fp32 enrolments (`faceauth reembed`).
    embedder_precision: Literal["fp32", "int8"] = "fp32"
    detector_precision: Literal["fp32", "int8"] = "fp32"

    # The NSFW check: on in the default profile, off in the permissive one (its only built-in model, NudeNet, is
    # AGPL-3.0). Off, answers say "nsfw" in skipped_checks and /v1/nsfw answers 503.
    nsfw_enabled: bool | None = None
    nsfw_local_model_path: Path | None = None
    nsfw_hf_repo_id: str = ""
    nsfw_threshold: float = Probability(default=0.5)
    spoof_local_model_path: Path | None = None
    spoof_hf_repo_id: str = ""
    spoof_threshold: float = Probability(default=0.5)
    blur_local_model_path: Path | None = None
    blur_hf_repo_id: str = ""
    blur_threshold: float = Probability(default=0.5)
    # For reference-system classifiers (.pth / converted ONNX): which output class is the bad one.
    nsfw_positive_class: int = Field(default=1, ge=0, le=999)
    spoof_positive_class: int = Field(default=1, ge=0, le=999)
    blur_positive_class: int = Field(default=1, ge=0, le=999)

    # Execution: a bounded pool runs the models off the event loop; past max_queue waiting requests we
    # answer 503 + Retry-After rather than queue without bound.
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=64)
    intra_op_threads: int = Field(default=1, ge=1, le=64)
    max_queue: int = Field(default=64, ge=0, le=10_000)
    # Micro-batching: concurrent requests share model runs (faceauth/inference/batching.py). A lone request
    # never waits; under load a batch is held open at most batch_wait_ms for requests already in flight.
    # "auto": on a GPU always; on a CPU only while workers are idle (a lone request then runs its models side
    # by side, 28 % faster), since on a CPU a batch costs as much per image as its images run one by one and the
    # staging costs ~4 % of throughput at full load (docs/PERFORMANCE.md). "on" / "off" force it.
    batching: Literal["auto", "on", "off"] = "auto"
    batch_max_size: int = Field(default=8, ge=1, le=256)
    batch_wait_ms: float = Field(default=2.0, ge=0.0, le=100.0)
    # Runs of one model at a time; 0: one per worker. On a CPU a bigger batch costs as much per image as
    # running its images side by side (docs/PERFORMANCE.md), so the runs spread over the workers; on a GPU set
    # 1 and a larger batch_max_size.
    batch_concurrency: int = Field(default=0, ge=0, le=64)

    max_image_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # Images per /v1/analyze/batch request (its body may be this many times max_image_bytes).
    max_batch: int = Field(default=32, ge=1, le=256)
    # JPEGs of at least twice this long side are decoded at a reduced DCT scale (1/2..1/8) that keeps this
    # many pixels, unless the request runs the blur check: blur is judged on the photo's own pixels, where a
    # slight blur of a large photo (sigma 3 px on 4600 px) is still visible; the other models then read an
    # area-reduced copy of about this size. 0: always full resolution.
    decode_target_side: int = Field(default=800, ge=0, le=16384)
    max_image_pixels: int = Field(default=40_000_000, ge=10_000)

    @field_validator("ml_device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value == "cpu" or re.fullmatch(r"(cuda|tensorrt)(:\d+)?", value):
            return value
        raise ValueError("must be 'cpu', 'cuda:N' or 'tensorrt:N'")

    @field_validator("face_model")
    @classmethod
    def _face_model(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a model pack")
        return value.strip()

    @property
    def nsfw_on(self) -> bool:
        if self.nsfw_enabled is not None:
            return self.nsfw_enabled
        return self.model_profile == "default" or self.nsfw_local_model_path is not None

    @property
    def detection_size(self) -> tuple[int, int]:
        return self.face_detection_width, self.face_detection_height


class APISettings(BaseSettings):
    """The Face API (`FACEAUTH_*`)."""

    model_config = SettingsConfigDict(env_prefix="FACEAUTH_", env_file=".env", extra="ignore")

    api_title: str = "faceauth"
    api_version: str = Field(default_factory=lambda: _package_version())
    api_host: str = "0.0.0.0"
    api_port: int = Field(default=8000, ge=1, le=65535)
    # One JSON object per log line, or plain text (read by the `faceauth` CLI; see MLSettings.log_format).
    log_format: Literal["json", "text"] = "json"

    # Embedded defaults (milvus-lite file, local image folder) live here; a restart keeps every face.
    data_dir: Path = Path("data")

    # -- the ML service -----------------------------------------------------------------------------------------
    ml_inference_service_url: str = "http://127.0.0.1:8001"
    # Sent as `Authorization: Bearer` when the ML service has ML_SERVICE_AUTH_TOKEN set.
    ml_inference_auth_token: str | None = None
    ml_connect_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    ml_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    # Only connection failures are retried (the request never reached the service, so it is safe).
    ml_connect_retries: int = Field(default=2, ge=0, le=10)
    ml_max_connections: int = Field(default=64, ge=1, le=1024)

    # -- Milvus --------------------------------------------------------------------------------------------------
    # Empty: a milvus-lite file under data_dir. Otherwise a server, e.g. http://milvus:19530.
    milvus_uri: str = ""
    # The reference's host/port pair; used when milvus_uri is empty and milvus_host is set.
    milvus_host: str | None = None
    milvus_port: int = Field(default=19530, ge=1, le=65535)
    milvus_token: str | None = None
    milvus_db_name: str = ""
    milvus_collection: str = Field(default="faceauth_faces", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
    milvus_embedding_dim: int = Field(default=512, ge=64, le=4096)
    milvus_search_threshold: float = Probability(default=DEFAULT_MATCH_THRESHOLD)
    # HNSW for real collections; FLAT (exact) is fine for a few thousand faces. On a Milvus server SCANN (nlist 1024,
    # nprobe 256) is faster and more accurate from ~100k faces a tenant; milvus-lite cannot build it (-> FLAT).
    milvus_index_type: Literal["HNSW", "FLAT", "IVF_FLAT", "IVF_SQ8", "SCANN", "AUTOINDEX"] = "HNSW"
    milvus_hnsw_m: int = Field(default=16, ge=4, le=64)
    milvus_hnsw_ef_construction: int = Field(default=200, ge=8, le=1024)
    # Recall over latency: on 100k synthetic vectors ef 128 gave recall@1 0.91, ef 512 gave 0.99 (docs/PERFORMANCE.md).
    milvus_search_ef: int = Field(default=512, ge=1, le=32768)
    milvus_ivf_nlist: int = Field(default=1024, ge=1, le=65536)
    milvus_ivf_nprobe: int = Field(default=32, ge=1, le=65536)
    # SCANN: candidates re-scored on the raw vectors after the 4-bit scan (per segment).
    milvus_scann_reorder_k: int = Field(default=100, ge=1, le=16384)
    milvus_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # Reads must see this process's own writes without a flush (Milvus 2.3 defaults to Bounded, which does not).
    # Session waits only for this process's last write; Strong waits for every write, also other API replicas'.
    milvus_consistency_level: Literal["Session", "Strong"] = "Session"

    # -- coordination between replicas ----------------------------------------------------------------------------
    # Empty: locks and rate limits live in this process (one replica). redis://host:6379/0 (rediss:// for TLS):
    # every replica shares them through that Redis server (docs/SCALING.md).
    coordination_url: str = Field(default="", pattern=r"^(|rediss?://\S+|unix://\S+)$")
    # A lock's lease: a crashed replica's locks free themselves after this long; a holder renews it every third.
    coordination_lease_seconds: float = Field(default=10.0, ge=1, le=300)
    # How long a request waits for a lock another replica holds before answering 503 lock_timeout.
    coordination_wait_seconds: float = Field(default=30.0, gt=0, le=600)
    # Per call to the coordination server: past this it counts as down (503 coordination_unavailable).
    coordination_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    # Prefix of every key faceauth keeps there (several deployments may share one Redis).
    coordination_prefix: str = Field(default="faceauth:", pattern=r"^[A-Za-z0-9_.:-]{0,64}$")
    # How often each replica records itself in the S3 store (_replicas/), so that replicas sharing a store
    # without FACEAUTH_COORDINATION_URL see each other and log an error. 0: never (and never on the local store).
    presence_interval_seconds: float = Field(default=15.0, ge=0, le=3600)

    # -- images --------------------------------------------------------------------------------------------------
    # local: files under data_dir/images (embedded default). s3: any S3 server through the minio SDK.
    object_store: Literal["local", "s3"] = "local"
    local_store_dir: Path | None = None
    minio_endpoint: str = "localhost:9002"
    minio_access_key: str = "minioadmin"
    minio_secret_key: str = "minioadmin"
    minio_bucket: str = Field(default="faceauth", min_length=3, max_length=63)
    minio_secure: bool = False
    minio_region: str | None = None
    # Where clients reach the object store, when not at minio_endpoint (presigned image links name this host),
    # e.g. https://faces-images.example.com.
    minio_public_url: str | None = Field(default=None, pattern=r"^https?://[^/\s]+/?$")
    # Short timeouts and few retries: a down S3 server must answer the request with a 503 in seconds, not hang it.
    minio_connect_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    minio_timeout_seconds: float = Field(default=20.0, gt=0, le=600)
    # Retries of one S3 call on connection errors and 5xx answers, with a short backoff (0.2 s, 0.4 s, ...).
    minio_retries: int = Field(default=2, ge=0, le=10)
    minio_max_connections: int = Field(default=16, ge=1, le=1024)

    # -- requests ------------------------------------------------------------------------------------------------
    max_image_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    search_default_top_k: int = Field(default=5, ge=1, le=100)
    # At start-up, wait this long for Milvus and the object store (containers start in any order).
    startup_timeout_seconds: float = Field(default=60.0, ge=0, le=3600)
    # At start-up, sweep in the background for what interrupted writes left behind (as `faceauth repair`).
    startup_sweep: bool = True
    # Photos per /v1/faces/batch/insert request.
    max_batch: int = Field(default=20, ge=1, le=100)
    # Faces one subject (person) may have; a search grouped by subject reads this many rows per subject.
    max_faces_per_subject: int = Field(default=10, ge=1, le=100)
    # Faces one /v1/faces/cluster request may cluster (its cost grows with the square of this).
    cluster_max_faces: int = Field(default=20000, ge=2, le=200000)

    # -- access ------------------------------------------------------------------------------------------------
    # API keys are required unless this is true (local experiments only: every start logs a warning).
    auth_disabled: bool = False
    # Per API key: a token bucket refilled at this rate (requests per second) holding at most `burst` requests.
    rate_limit_per_second: float = Field(default=20.0, gt=0, le=100000)
    rate_limit_burst: int = Field(default=40, ge=1, le=1000000)
    # Per client address: requests with a missing or wrong key, `burst` at once and then this many a second; past
    # that, 429 before the key is looked up (docs/SECURITY.md).
    auth_failures_per_second: float = Field(default=0.5, gt=0, le=100000)
    auth_failures_burst: int = Field(default=20, ge=1, le=1000000)
    # Keep enrolment photos in the object store. false: embeddings only (no re-embedding after a model change).
    store_images: bool = True
    # Lifetime of the presigned links to stored images.
    image_link_seconds: int = Field(default=300, ge=10, le=3600)

    # -- 1:1 verification ----------------------------------------------------------------------------------------
    # Invalid values here do not stop start-up: they fall back to the safe default with a warning, because a
    # wrong verification default (a threshold of -1 matches everybody) must never be taken as given.
    # Empty: the search threshold.
    verify_threshold: float | None = None
    # /compare-faces: how many of the 3 front photos must match the back photo (2 or 3).
    compare_min_matches: int = 2

    # -- images given by URL -------------------------------------------------------------------------------------
    # Hosts (names or IPs, optionally host:port) that may be fetched even when they resolve to a loopback or
    # private address. Comma-separated; empty: only public addresses.
    image_url_allowed_hosts: str = ""
    image_url_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    image_url_max_redirects: int = Field(default=3, ge=0, le=10)
    # s3:// URLs read the configured object store: keys under this prefix (where a backend drops photos to be
    # checked), or under the request's own tenant. The leading "_" can never start a tenant name.
    image_url_s3_prefix: str = Field(default="_uploads/", pattern=r"^_[A-Za-z0-9._-]*/$")

    @field_validator("verify_threshold", mode="before")
    @classmethod
    def _safe_verify_threshold(cls, value: object) -> float | None:
        if value is None or value == "":
            return None
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = float("nan")
        if not 0.0 <= number <= 1.0:
            log.warning("FACEAUTH_VERIFY_THRESHOLD=%r is not in 0..1: using the search threshold", value)
            return None
        return number

    @field_validator("compare_min_matches", mode="before")
    @classmethod
    def _safe_compare_min_matches(cls, value: object) -> int:
        if str(value).strip() in ("2", "3"):
            return int(str(value).strip())
        log.warning("FACEAUTH_COMPARE_MIN_MATCHES=%r is not 2 or 3: using 2", value)
        return 2

    @property
    def effective_verify_threshold(self) -> float:
        return self.milvus_search_threshold if self.verify_threshold is None else self.verify_threshold

    @property
    def allowed_url_hosts(self) -> list[str]:
        return [h.strip() for h in self.image_url_allowed_hosts.split(",") if h.strip()]

    @property
    def resolved_milvus_uri(self) -> str:
        if self.milvus_uri:
            return self.milvus_uri
        if self.milvus_host:
            return f"http://{self.milvus_host}:{self.milvus_port}"
        return str(self.data_dir / "milvus.db")

    @property
    def resolved_local_store_dir(self) -> Path:
        return self.local_store_dir or self.data_dir / "images"


def _package_version() -> str:
    import faceauth

    return faceauth.__version__


class SettingsError(RuntimeError):
    """A setting failed validation; the message names the environment variable."""


def describe_validation_error(exc: ValidationError, prefix: str) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "?"
        lines.append(f"{prefix}{field.upper()}: {err['msg']} (got {err.get('input')!r})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_ml_settings(**overrides: object) -> MLSettings:
    try:
        return MLSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc, "ML_SERVICE_")) from None


def load_api_settings(**overrides: object) -> APISettings:
    try:
        return APISettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc, "FACEAUTH_")) from None
