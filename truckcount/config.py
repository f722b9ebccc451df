"""Application configuration: one YAML file -> ``AppConfig``.

Every model forbids unknown keys; every field has a default, a description and bounds. Cross-field
rules are named ``verify_*`` functions whose errors name the camera. Stages receive their own
sub-model, never the whole ``AppConfig``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from truckcount.config_base import ConfigError, StrictModel, describe
from truckcount.config_camera import (
    CameraConfig,
    DirectionNames,
    LineConfig,
    Point,
    TimestampSource,
    check_time_pattern,
    polygon_area,
)
from truckcount.config_counting import CounterConfig, TrackerConfig

__all__ = [
    "DEFAULT_WEIGHTS",
    "AppConfig",
    "CameraConfig",
    "CascadeConfig",
    "ConfigError",
    "CounterConfig",
    "DetectorConfig",
    "DirectionNames",
    "LineConfig",
    "Point",
    "ServiceConfig",
    "StorageConfig",
    "StrictModel",
    "TimestampSource",
    "TrackerConfig",
    "load_config",
    "parse_config",
    "polygon_area",
]

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "detector" / "weights" / "truckcount.pt"
DEFAULT_PRESENCE = DEFAULT_WEIGHTS.with_name("presence.pt")
DEFAULT_CLASSIFIER = DEFAULT_WEIGHTS.with_name("classifier.pt")


class DetectorConfig(StrictModel):
    """The CNN detector and how it runs."""

    weights: Path = Field(DEFAULT_WEIGHTS, description="checkpoint file (.pt)")
    classifier: Path | None = Field(
        DEFAULT_CLASSIFIER,
        description="crop classifier checkpoint that decides the class of each counted track "
        "from full-resolution crops (default: the shipped one); null leaves the class to the "
        "detector's vote over the track",
    )
    score_threshold: float = Field(
        0.1, ge=0.0, le=1.0, description="lowest score kept (the tracker's low threshold uses it)"
    )
    nms_iou: float = Field(0.6, gt=0, le=1, description="IoU for torchvision batched NMS")
    class_agnostic_nms: bool = Field(
        True,
        description="NMS across classes: one box per vehicle for the tracker (a truck box and a "
        "car box on one vehicle could become two tracks and two counts); false runs it per class",
    )
    batch_size: int = Field(8, ge=1, le=1024, description="frames per forward pass")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto|cpu|cuda")
    precision: str = Field(
        "fp32",
        pattern=r"^(fp32|bf16)$",
        description="fp32, or bf16 autocast (about 2.8x faster on CPUs with AMX/AVX-512 BF16 at "
        "batch 8; scores differ slightly)",
    )
    max_detections: int = Field(100, ge=1, le=1000, description="boxes kept per frame")
    runtime: str = Field(
        "torch",
        pattern=r"^(torch|onnx)$",
        description="torch (eager PyTorch) or onnx (ONNX Runtime, CUDA provider when present; "
        "weights may then be a .onnx file, a .pt is exported once into the user cache)",
    )
    input_size: int | None = Field(
        None,
        ge=64,
        le=1280,
        multiple_of=32,
        description="side of the square the frames are resized to (default: the size the model "
        "was trained at); the network is fully convolutional, and a larger input finds small "
        "and dark vehicles better at a cost that grows with its area (model card)",
    )
    flip: bool = Field(
        False,
        description="also run each frame's mirror image and average the two outputs: better "
        "detection, twice the network's cost (model card)",
    )


class CascadeConfig(StrictModel):
    """Cheap checks that decide whether the detector runs on a frame (off by default)."""

    enabled: bool = Field(False, description="skip the detector on frames the checks clear")
    region_margin: float = Field(
        0.25,
        ge=0,
        le=1,
        description="the watched region is the box around the camera's lines grown by this "
        "fraction of the frame on each side; nothing outside it can cross a line soon",
    )
    pixel_delta: int = Field(
        15, ge=1, le=255, description="grey-level change that makes a pixel count as moving"
    )
    motion_share: float = Field(
        0.002,
        ge=0,
        le=1,
        description="share of the region's pixels that must change since the last analysed "
        "frame for the frame to be analysed",
    )
    use_presence: bool = Field(
        False,
        description="also skip frames where the truck-presence classifier (`presence.weights`) "
        "sees no truck in the region; only with a counter that records trucks only",
    )
    presence_threshold: float = Field(
        0.05, ge=0, le=1, description="lowest truck probability in a region cell that keeps a frame"
    )
    audit_every: int = Field(
        10,
        ge=1,
        le=10_000,
        description="run the detector anyway on every n-th frame the checks would skip; a "
        "vehicle found there turns the cascade off for the rest of the run",
    )


class PresenceFeatureConfig(StrictModel):
    """The truck-presence feature: per bucket, the share of analysed frames with a truck."""

    weights: Path | None = Field(
        DEFAULT_PRESENCE,
        description="truck-presence classifier checkpoint (default: the shipped one); null "
        "turns the feature off",
    )
    threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="a frame holds a truck when the classifier's probability for any grid cell "
        "reaches this",
    )


class StorageConfig(StrictModel):
    """Where crossings are written."""

    url: str = Field(
        "sqlite:///truckcount.db",
        min_length=1,
        description="SQLAlchemy URL; a relative sqlite path is relative to the config file",
    )
    spool_dir: Path | None = Field(
        None,
        description="folder for writes made while the database is unreachable, replayed when it "
        "is back; default: beside the SQLite file, else ~/.local/share/truckcount/spool",
    )


class ServiceConfig(StrictModel):
    """The long-running service (``truckcount serve``): HTTP API, scheduled jobs, watch folder.

    Relative folders are relative to the config file. The API token is read from the
    environment variable named by ``token_env``, never from this file.
    """

    host: str = Field("127.0.0.1", min_length=1, description="address the HTTP API binds")
    port: int = Field(8080, ge=1, le=65535, description="port of the HTTP API")
    token_env: str = Field(
        "TRUCKCOUNT_API_TOKEN",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding the API bearer token; required when the "
        "host is not a loopback address",
    )
    watch_folder: Path | None = Field(
        None, description="folder where new recordings are dropped; None: no watch folder"
    )
    watch_pattern: str = Field(
        "{camera}_%Y%m%d_%H%M%S.mp4",
        min_length=1,
        description="file name of a recording: {camera} is a camera id, the rest strptime "
        "codes of its first frame in the camera's time zone (unless it has %z)",
    )
    watch_interval_s: float = Field(30.0, ge=0.5, le=86400, description="watch folder scan period")
    settle_s: float = Field(
        5.0, ge=0, le=3600, description="a file must be unchanged this long (still being copied)"
    )
    eval_data: Path | None = Field(
        None, description="labelled frames (images/, labels/) for the nightly model evaluation"
    )
    eval_split: str = Field("val", pattern=r"^(all|val|train)$", description="frames evaluated")
    nightly_at: str = Field(
        "02:30",
        pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description="UTC time (HH:MM) of the nightly model evaluation",
    )

    @field_validator("watch_pattern")
    @classmethod
    def _dated_names(cls, v: str) -> str:
        return check_time_pattern(v)


class AppConfig(StrictModel):
    """The whole application configuration."""

    storage: StorageConfig = Field(default_factory=lambda: StorageConfig())
    detector: DetectorConfig = Field(default_factory=lambda: DetectorConfig())
    tracker: TrackerConfig = Field(default_factory=lambda: TrackerConfig())
    counter: CounterConfig = Field(default_factory=lambda: CounterConfig())
    cascade: CascadeConfig = Field(default_factory=lambda: CascadeConfig())
    presence: PresenceFeatureConfig = Field(default_factory=lambda: PresenceFeatureConfig())
    cameras: tuple[CameraConfig, ...] = Field(default=(), description="configured cameras")
    service: ServiceConfig = Field(
        default_factory=lambda: ServiceConfig(), description="the long-running service"
    )

    def camera(self, camera_id: str) -> CameraConfig:
        """Return the camera with this id, or raise ``ConfigError`` naming the known ids."""
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        known = ", ".join(c.id for c in self.cameras) or "none"
        raise ConfigError(f"unknown camera {camera_id!r} (configured: {known})")

    def digest(self) -> str:
        """Stable short hash of everything that changes counts (not storage, not the service)."""
        payload = self.model_dump(mode="json", exclude={"storage", "service"})
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def verify_unique_ids(cfg: AppConfig) -> None:
    """Camera ids are unique, and line ids are unique within each camera."""
    seen: set[str] = set()
    for cam in cfg.cameras:
        if cam.id in seen:
            raise ConfigError(f"camera {cam.id!r} is configured twice")
        seen.add(cam.id)
        line_ids = [ln.id for ln in cam.lines]
        dupes = sorted({i for i in line_ids if line_ids.count(i) > 1})
        if dupes:
            raise ConfigError(f"camera {cam.id!r}: duplicate line ids {dupes}")


def verify_direction_names(cfg: AppConfig) -> None:
    """The two directions of a line have different names."""
    for cam in cfg.cameras:
        for ln in cam.lines:
            if ln.directions.in_ == ln.directions.out:
                raise ConfigError(
                    f"camera {cam.id!r} line {ln.id!r}: both directions are named "
                    f"{ln.directions.out!r}"
                )


def verify_cascade_presence(cfg: AppConfig) -> None:
    """The cascade's presence check needs the presence classifier."""
    if cfg.cascade.use_presence and cfg.presence.weights is None:
        raise ConfigError("cascade.use_presence needs presence.weights (the classifier)")


VERIFIERS = (verify_unique_ids, verify_direction_names, verify_cascade_presence)


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make relative file paths in the YAML relative to the config file's folder."""
    storage = raw.get("storage")
    if isinstance(storage, dict):
        url = storage.get("url")
        prefix = "sqlite:///"
        if isinstance(url, str) and url.startswith(prefix) and not url.startswith(prefix + "/"):
            rel = url[len(prefix) :]
            if rel and rel != ":memory:":
                storage["url"] = prefix + str((base / rel).resolve())
        spool = storage.get("spool_dir")
        if isinstance(spool, str) and not Path(spool).is_absolute():
            storage["spool_dir"] = str((base / spool).resolve())
    for section, key in (
        ("detector", "weights"),
        ("detector", "classifier"),
        ("presence", "weights"),
    ):
        part = raw.get(section)
        if isinstance(part, dict) and isinstance(part.get(key), str):
            w = Path(part[key])
            part[key] = str(w if w.is_absolute() else (base / w).resolve())
    for cam in raw.get("cameras") or []:
        src = cam.get("source") if isinstance(cam, dict) else None
        if isinstance(src, str) and "://" not in src and not Path(src).is_absolute():
            cam["source"] = str((base / src).resolve())
    return raw


def parse_config(raw: dict[str, Any]) -> AppConfig:
    """Validate a mapping into ``AppConfig`` and run every ``verify_*`` rule."""
    try:
        cfg = AppConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from exc
    for verify in VERIFIERS:
        verify(cfg)
    return cfg


def load_config(path: Path) -> AppConfig:
    """Read and validate a YAML config file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config {path}: expected a mapping at top level, got {type(raw).__name__}"
        )
    try:
        return parse_config(_resolve_paths(raw, path.resolve().parent))
    except ConfigError as exc:
        raise ConfigError(f"config {path}: {exc}") from exc
