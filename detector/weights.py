"""Checkpoint files: safe loading (``weights_only=True``), atomic saving, device, versions."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

REQUIRED_KEYS = ("model", "model_config", "classes")

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or not a truckcount model."""


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cpu`` and ``cuda[:N]`` are the others."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise ValueError(f"device {name!r}: expected auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CheckpointError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: a CUDA GPU that supports it, or a CPU with
    AVX-512 BF16 or AMX. Elsewhere PyTorch emulates bf16, and autocast runs slower than fp32."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu, since 2.1
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_amp(requested: bool | None, device: torch.device) -> bool:
    """bf16 mixed precision for training: ``None`` turns it on where ``device`` runs bf16
    natively; asking for it elsewhere is honoured, with a warning about the cost."""
    native = native_bf16(device)
    if requested is None:
        log.info("bf16 mixed precision %s on %s", "on" if native else "off (not native)", device)
        return native
    if requested and not native:
        log.warning(
            "bf16 mixed precision on %s, which has no native bf16 (AVX-512 BF16 or AMX): it is "
            "emulated and runs many times slower than fp32 (--no-amp)",
            device,
        )
    return requested


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; ``CheckpointError`` names a bad file."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # arbitrary bytes reach the unpickler: any failure means unreadable
        raise CheckpointError(
            f"cannot read checkpoint {path}: not a PyTorch checkpoint, or damaged "
            f"({type(exc).__name__}: {_load_failure(exc)})"
        ) from exc
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise CheckpointError(
            f"{path} is not a truckcount checkpoint (expected keys {REQUIRED_KEYS})"
        )
    return state


def _load_failure(exc: Exception) -> str:
    """The line of a load error that says what went wrong: torch's weights-only refusal opens
    with a paragraph about its defaults, and names the offending object further down."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        named = [ln for ln in lines if ln.startswith(("WeightsUnpickler error", "Unsupported"))]
        return named[0] if named else "refused by the weights-only loader"
    return lines[0] if lines else "no detail"


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write atomically, so a crash mid-save never leaves a half-written checkpoint; missing
    parent folders are made. ``CheckpointError`` names a path that cannot be written."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as out:  # an unwritable path fails here, with the system's reason
            torch.save(state, out)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise CheckpointError(f"cannot write checkpoint {path}: {why}") from None


def export_weights(checkpoint: Path, out: Path) -> str:
    """Write the slim shipping file (model, config, classes, metrics, args); return its version."""
    state = load_checkpoint(checkpoint)
    model = {k: v.clone() for k, v in state["model"].items()}
    slim: dict[str, Any] = {
        k: state[k] for k in ("kind", "model_config", "classes", "args", "epoch") if k in state
    }
    slim["model"] = model
    slim["metrics"] = {"val": state.get("metrics", {}).get("val", {})}
    save_checkpoint(slim, out)
    return model_version(out)


def model_version(path: Path) -> str:
    """A stable version string: the file stem plus the first 10 hex digits of its SHA-256."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    return f"{path.stem}-{digest}"
