"""The detector network as ONNX: export from a checkpoint, and ONNX Runtime inference.

The exported graph holds the network alone (normalised ``(B, 3, S, S)`` float input, dynamic
batch; outputs ``heatmap``, ``size``, ``offset``). Peak picking and NMS stay in torch
(``model.decode``), so both runtimes share one decoding. ``OnnxNetwork`` is an ``nn.Module`` whose
``forward`` runs the ONNX Runtime session, so the batched prediction loop drives either runtime.

The file carries its provenance in the ONNX metadata: the checkpoint's version, classes and
architecture, and ``int8`` when it was quantised.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from truckcount.detector.augment import Image, to_tensor
from truckcount.detector.engine import Prediction
from truckcount.detector.model import ModelConfig, TruckNet, decode
from truckcount.detector.weights import CheckpointError
from truckcount.types import CLASSES

log = logging.getLogger(__name__)

INPUT = "images"
OUTPUTS = ("heatmap", "size", "offset")
OPSET = 18


class _Heads(nn.Module):
    """TruckNet with its dict output flattened to a tuple, for export."""

    def __init__(self, model: TruckNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.model(x)
        return out["heatmap"], out["size"], out["offset"]


def export_onnx(model: TruckNet, version: str, out: Path, input_size: int | None = None) -> None:
    """Write ``model`` as a self-contained ONNX file with a dynamic batch dimension.

    Args:
        model: the network, in eval mode, on CPU.
        version: the checkpoint's version string, stored in the file's metadata.
        out: the ``.onnx`` file to write (replaced atomically).
        input_size: the square input the graph takes (default: the size the model was trained
            at, which the metadata's config keeps either way).
    """
    s = input_size or model.cfg.input_size
    meta = provenance(version, model.cfg.to_dict())
    export_module(_Heads(model.float().cpu().eval()), (3, s, s), (INPUT, OUTPUTS), meta, out)


def provenance(version: str, config: dict[str, Any], **extra: str) -> dict[str, str]:
    """The metadata an export carries: the checkpoint's version, the class names and the
    network's config (JSON), plus ``extra``."""
    return {
        "model_version": version,
        "classes": json.dumps([c.value for c in CLASSES]),
        "model_config": json.dumps(config),
        **extra,
    }


def export_module(
    module: nn.Module,
    item_shape: tuple[int, ...],
    names: tuple[str, Sequence[str]],
    meta: dict[str, str],
    out: Path,
) -> None:
    """Export ``module`` (eval mode, CPU, fp32) with a dynamic batch and ``meta`` as metadata.

    Args:
        module: takes one (B, *item_shape) float tensor.
        item_shape: the input's shape without the batch dimension.
        names: the input's name and the outputs' names.
        meta: string metadata stored in the file (provenance: version, classes, config).
        out: the ``.onnx`` file to write (replaced atomically).
    """
    import onnx

    batch = torch.export.Dim("batch", min=1, max=1024)
    for name in ("onnx_ir", "onnxscript"):  # pass-by-pass chatter at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    program = torch.onnx.export(
        module.eval(),
        (torch.zeros(2, *item_shape),),
        input_names=[names[0]],
        output_names=list(names[1]),
        dynamic_shapes=({0: batch},),
        opset_version=OPSET,
        dynamo=True,
        verbose=False,
    )
    assert program is not None
    proto = program.model_proto
    _set_metadata(proto, meta)
    _save_atomic(proto, out, onnx.save_model)


def _set_metadata(proto: Any, meta: dict[str, str]) -> None:
    old = {p.key: p.value for p in proto.metadata_props}
    old.update(meta)
    del proto.metadata_props[:]
    for k, v in sorted(old.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v


def _save_atomic(proto: Any, out: Path, save: Any) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=out.parent)
    except OSError as exc:
        raise CheckpointError(f"cannot write {out}: {exc.strerror or exc}") from exc
    os.close(fd)
    try:
        save(proto, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def onnx_cache(version: str) -> Path:
    """Where the ONNX export of a checkpoint is kept: ``$XDG_CACHE_HOME/truckcount/onnx``."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "truckcount" / "onnx" / f"{version}.onnx"


def cached_export(version: str, write: Callable[[Path], None]) -> Path:
    """The cached ONNX file of ``version``; ``write(path)`` exports it there on first use."""
    out = onnx_cache(version)
    if not out.is_file():
        log.info("exporting %s to ONNX at %s", version, out)
        write(out)
    return out


def read_metadata(path: Path) -> dict[str, str]:
    """The truckcount metadata of an ONNX file; ``CheckpointError`` if it is not one of ours."""
    import onnx

    if not path.is_file():
        raise CheckpointError(f"ONNX model not found: {path}")
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others without a common base
        raise CheckpointError(f"cannot read ONNX model {path}: {exc}") from exc
    meta = {p.key: p.value for p in proto.metadata_props}
    if "model_version" not in meta or "model_config" not in meta:
        raise CheckpointError(f"{path} is not a truckcount ONNX model (no model_version)")
    if json.loads(meta.get("classes", "[]")) != [c.value for c in CLASSES]:
        raise CheckpointError(f"{path}: classes {meta.get('classes')} differ from {list(CLASSES)}")
    return meta


def providers(device: torch.device) -> list[str]:
    """CUDA first when the device is CUDA and onnxruntime has it, then the CPU provider."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider"] if device.type == "cuda" else []
    return [p for p in wanted if p in have] + ["CPUExecutionProvider"]


def open_session(path: Path, device: torch.device, threads: int | None = None) -> Any:
    """An ONNX Runtime session on ``device`` with ``threads`` intra-op threads (None: torch's)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle pool threads would otherwise spin after each run and take the cores from the
    # resize, normalisation and decoding around it (about 20 % of end-to-end throughput).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), opts, providers=providers(device))
    log.info("ONNX Runtime %s on %s", path.name, session.get_providers()[0])
    return session


class OnnxNetwork(nn.Module):
    """An ONNX Runtime session that behaves like ``TruckNet`` (tensor in, dict of heads out).

    Args:
        path: a ``.onnx`` file written by ``export_onnx`` (or its int8 quantisation).
        device: ``cuda`` uses the CUDA provider when onnxruntime has it; else the CPU provider.
        threads: intra-op threads; None uses torch's thread count, so both runtimes compare
            like for like.
    """

    def __init__(self, path: Path, device: torch.device, threads: int | None = None) -> None:
        super().__init__()
        meta = read_metadata(path)
        self.cfg = ModelConfig.from_dict(json.loads(meta["model_config"]))
        self.version = meta["model_version"]
        self.session = open_session(path, device, threads)

    @property
    def input_size(self) -> int:
        """The side of the square input the graph takes (fixed at export)."""
        return int(self.session.get_inputs()[0].shape[2])

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Run the session on a normalised (B, 3, S, S) batch; outputs come back on CPU."""
        feed = np.ascontiguousarray(x.detach().cpu().float().numpy())
        outs = self.session.run(list(OUTPUTS), {INPUT: feed})
        return {k: torch.from_numpy(v) for k, v in zip(OUTPUTS, outs, strict=True)}

    def predict(self, images: Sequence[Image], batch_size: int, **nms: Any) -> list[Prediction]:
        """Like ``engine.predict``, without its channels-last copy that ONNX Runtime would undo.

        Args:
            images: BGR uint8 images already resized to the input size.
            batch_size: images per session run.
            **nms: ``score_threshold``, ``nms_iou``, ``max_detections`` and ``class_agnostic``
                for ``decode``.
        """
        results: list[Prediction] = []
        for i in range(0, len(images), batch_size):
            out = self(to_tensor(images[i : i + batch_size]))
            results += [(b.numpy(), s.numpy(), c.numpy()) for b, s, c in decode(out, **nms)]
        return results


def quantize_int8(fp32: Path, out: Path, calibration: Sequence[Image]) -> None:
    """Static int8 quantisation (QDQ, per-channel weights) calibrated on resized BGR images.

    Args:
        fp32: an ONNX file written by ``export_onnx``.
        out: the int8 file to write; its metadata version gets a ``+int8`` suffix.
        calibration: images already resized to the input size (a few hundred real frames).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("int8 quantisation needs calibration images, got none")
    meta = read_metadata(fp32)
    with tempfile.TemporaryDirectory() as tmp:
        pre, raw = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(raw),
            _Calibration(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        proto = onnx.load_model(str(raw))
    _set_metadata(proto, {**meta, "model_version": meta["model_version"] + "+int8"})
    _save_atomic(proto, out, onnx.save_model)


class _Calibration:
    """``CalibrationDataReader`` over resized images, eight at a time."""

    def __init__(self, images: Sequence[Image]) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {INPUT: to_tensor(images[i : i + 8]).numpy()} for i in range(0, len(images), 8)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def calibration_images(data: Path, size: int, limit: int = 256) -> list[Image]:
    """Up to ``limit`` training-split frames of a labelled folder, evenly spaced, resized.

    Calibrating on training frames keeps the validation split honest for the AP check.
    """
    from truckcount.detector.data import cache_images, is_validation, load_samples

    train = [s for s in load_samples(data, keep_unlabelled=True) if not is_validation(s)]
    if not train:
        raise ValueError(f"{data}: no training-split frames to calibrate on")
    step = max(len(train) // limit, 1)
    return cache_images(train[::step][:limit], size)
