"""ByteTrack-style multi-object tracker with a time-scaled constant-velocity Kalman filter.

Each track filters its box as ``(cx, cy, w, h)`` plus their velocities in pixels per *second*, so
prediction works the same at 5 fps, at 10 fps and across missing frames. Association follows
ByteTrack: high-score boxes are matched to every confirmed track first, then low-score boxes to
the tracks still unmatched, then the remaining high-score boxes to last frame's new (tentative)
tracks. A tentative track is confirmed when matched on the next update; only boxes of confirmed
tracks are returned. Tracking is class-agnostic: class ids pass through unchanged.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from truckcount.config import TrackerConfig
from truckcount.types import Detections

log = logging.getLogger(__name__)

Array = npt.NDArray[np.float64]

# Noise model, in units of the box's own size (w for x and w, h for y and h) so that it suits
# near and far vehicles alike.
_MEAS_STD = 0.05  # detector jitter per coordinate
_ACCEL_STD = 1.0  # white-noise acceleration, box sizes / s^1.5 (perspective makes speed change)
_INIT_POS_STD = 0.1  # uncertainty of a new track's box
_INIT_VEL_STD = 2.0  # uncertainty of a new track's velocity, box sizes / s
_GATED = 1e6  # cost of a pair that may not be matched
_MIN_SIDE = 1.0  # pixels; keeps predicted boxes non-degenerate

_H = np.hstack([np.eye(4), np.zeros((4, 4))])  # measurement picks (cx, cy, w, h)


class TrackState(Enum):
    """Life cycle of a track."""

    TENTATIVE = "tentative"  # started last update, not yet confirmed
    TRACKED = "tracked"  # matched on the latest update
    LOST = "lost"  # confirmed, currently unmatched, kept for ``lost_seconds``


def _xyxy_to_z(box: npt.ArrayLike) -> Array:
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])


def _scales(mean: Array) -> Array:
    """Per-coordinate size scale (w, h, w, h), never below one pixel."""
    w, h = max(mean[2], _MIN_SIDE), max(mean[3], _MIN_SIDE)
    return np.array([w, h, w, h])


@dataclass
class _Track:
    """Kalman state of one track; ``mean`` and ``cov`` refer to media time ``t_state``."""

    track_id: int
    mean: Array
    cov: Array
    t_state: float
    last_seen: float
    state: TrackState = TrackState.TENTATIVE

    @classmethod
    def start(cls, track_id: int, box: npt.ArrayLike, t: float) -> _Track:
        z = _xyxy_to_z(box)
        s = _scales(z)
        std = np.concatenate([_INIT_POS_STD * s, _INIT_VEL_STD * s])
        mean = np.concatenate([z, np.zeros(4)])
        return cls(track_id, mean, np.diag(std**2), t, t)

    def predict(self, t: float) -> None:
        """Move the state forward to time ``t`` (constant velocity, white-noise acceleration)."""
        dt = t - self.t_state
        if dt <= 0:
            return
        f = np.eye(8)
        f[:4, 4:] = dt * np.eye(4)
        q_diag = (_ACCEL_STD * _scales(self.mean)) ** 2
        q = np.zeros((8, 8))  # kron([[dt^3/3, dt^2/2], [dt^2/2, dt]], diag(q_diag)), built directly
        i = np.arange(4)
        q[i, i] = dt**3 / 3 * q_diag
        q[i, i + 4] = q[i + 4, i] = dt**2 / 2 * q_diag
        q[i + 4, i + 4] = dt * q_diag
        self.mean = f @ self.mean
        self.cov = f @ self.cov @ f.T + q
        self.t_state = t

    def correct(self, box: npt.ArrayLike, t: float) -> None:
        """Fuse a matched box observed at time ``t`` and mark the track as tracked."""
        z = _xyxy_to_z(box)
        r = np.diag((_MEAS_STD * _scales(z)) ** 2)
        s = _H @ self.cov @ _H.T + r
        gain = np.linalg.solve(s, _H @ self.cov).T
        self.mean = self.mean + gain @ (z - _H @ self.mean)
        self.cov = (np.eye(8) - gain @ _H) @ self.cov
        self.last_seen = t
        self.state = TrackState.TRACKED

    def mark_lost(self) -> None:
        """Stop growing or shrinking the box while it coasts unseen (as ByteTrack does)."""
        self.mean[6:] = 0.0
        self.state = TrackState.LOST

    @property
    def xyxy(self) -> Array:
        cx, cy = self.mean[0], self.mean[1]
        w, h = max(self.mean[2], _MIN_SIDE), max(self.mean[3], _MIN_SIDE)
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def iou_matrix(a: npt.ArrayLike, b: npt.ArrayLike) -> Array:
    """Pairwise IoU of boxes ``a`` (M, 4) and ``b`` (N, 4), xyxy; returns (M, N)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def association_cost(
    tracks: npt.ArrayLike, dets: npt.ArrayLike, min_iou: float, max_distance: float
) -> Array:
    """Cost of matching predicted track boxes (M, 4) to detected boxes (N, 4).

    The cost is ``(1 - IoU) + d``, where ``d`` is the centre distance divided by the diagonal of
    the predicted box. IoU alone loses fast vehicles at low frame rates (a box that moved more
    than its own size has IoU 0), so a pair is allowed when ``IoU >= min_iou`` *or*
    ``d <= max_distance``; any other pair costs ``_GATED``.
    """
    t = np.asarray(tracks, dtype=np.float64).reshape(-1, 4)
    d = np.asarray(dets, dtype=np.float64).reshape(-1, 4)
    iou = iou_matrix(t, d)
    tc = (t[:, :2] + t[:, 2:]) / 2
    dc = (d[:, :2] + d[:, 2:]) / 2
    diag = np.maximum(np.hypot(t[:, 2] - t[:, 0], t[:, 3] - t[:, 1]), _MIN_SIDE)
    dist = np.linalg.norm(tc[:, None, :] - dc[None, :, :], axis=2) / diag[:, None]
    allowed = (iou >= min_iou) | (dist <= max_distance)
    return np.where(allowed, 1.0 - iou + dist, _GATED)


def sizes_agree(
    tracks: npt.ArrayLike, dets: npt.ArrayLike, max_change: float
) -> npt.NDArray[np.bool_]:
    """(M, N): whether each pair's sizes (square roots of the box areas) differ by at most
    the factor ``max_change``."""

    def size(boxes: npt.ArrayLike) -> Array:
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        sides = np.clip(b[:, 2:] - b[:, :2], _MIN_SIDE, None)
        return np.sqrt(sides[:, 0] * sides[:, 1])

    ratio = size(dets)[None, :] / size(tracks)[:, None]
    return np.asarray(np.abs(np.log(ratio)) <= math.log(max_change))


class Tracker:
    """Give each vehicle a track id that stays the same while it is in view.

    Args:
        cfg: thresholds and the lost-track buffer.

    Track ids are positive and never reused during the tracker's life. A confirmed track that
    is not matched coasts for ``cfg.lost_seconds`` of media time and is then deleted.
    """

    def __init__(self, cfg: TrackerConfig) -> None:
        self.cfg = cfg
        self._tracks: dict[int, _Track] = {}
        self._next_id = 1
        self._last_t: float | None = None

    def __len__(self) -> int:
        """Number of tracks held in memory (tentative, tracked and lost)."""
        return len(self._tracks)

    def active_ids(self) -> set[int]:
        """Ids of confirmed tracks not yet removed (tracked or lost)."""
        return {i for i, tr in self._tracks.items() if tr.state is not TrackState.TENTATIVE}

    def update(self, dets: Detections, t: float) -> Detections:
        """Associate one frame's detections with the tracks.

        Args:
            dets: boxes of one frame; any ``tracker_id`` it carries is ignored.
            t: media time of the frame in seconds; must not decrease between calls.

        Returns:
            A new ``Detections`` with the boxes of confirmed tracks, in input order, with
            ``tracker_id`` set. The input is not modified.
        """
        self._advance_clock(t)
        for track in self._tracks.values():
            track.predict(t)
        conf = dets.confidence
        high = np.flatnonzero(conf >= self.cfg.high_threshold)
        low = np.flatnonzero((conf >= self.cfg.low_threshold) & (conf < self.cfg.high_threshold))
        matched: dict[int, int] = {}  # detection row -> track id
        confirmed = self._with_state(TrackState.TRACKED, TrackState.LOST)
        left, high = self._associate(confirmed, dets, high, t, matched)
        still = [tr for tr in left if tr.state is TrackState.TRACKED]
        left, _ = self._associate(still, dets, low, t, matched)
        for track in left:
            track.mark_lost()
        left, high = self._associate(self._with_state(TrackState.TENTATIVE), dets, high, t, matched)
        for track in left:
            del self._tracks[track.track_id]
        self._start_tracks(dets, high, t)
        self._drop_expired(t)
        rows = np.array(sorted(matched), dtype=np.int64)
        ids = np.array([matched[r] for r in rows], dtype=np.int64)
        return dets[rows].with_tracker_id(ids)

    def _advance_clock(self, t: float) -> None:
        if not math.isfinite(t):
            raise ValueError(f"Tracker.update: expected a finite media time, got {t}")
        if self._last_t is not None and t < self._last_t:
            raise ValueError(f"Tracker.update: time went back from {self._last_t} s to {t} s")
        self._last_t = t

    def _with_state(self, *states: TrackState) -> list[_Track]:
        return [tr for tr in self._tracks.values() if tr.state in states]

    def _associate(
        self,
        tracks: list[_Track],
        dets: Detections,
        rows: npt.NDArray[np.int64],
        t: float,
        matched: dict[int, int],
    ) -> tuple[list[_Track], npt.NDArray[np.int64]]:
        """Match ``tracks`` to detection ``rows``; update the matched tracks in place.

        Returns:
            The unmatched tracks and the unmatched rows.
        """
        if not tracks or rows.size == 0:
            return tracks, rows
        boxes = np.stack([tr.xyxy for tr in tracks])
        cfg = self.cfg
        cost = association_cost(boxes, dets.xyxy[rows], cfg.match_iou, cfg.max_center_distance)
        lost = [k for k, tr in enumerate(tracks) if tr.state is TrackState.LOST]
        if lost and cfg.max_size_change > 0:
            # A track that coasted unseen only takes a box of about its own size.
            ok = sizes_agree(boxes[lost], dets.xyxy[rows], cfg.max_size_change)
            cost[lost] = np.where(ok, cost[lost], _GATED)
        ti, di = linear_sum_assignment(cost)
        used_t: set[int] = set()
        used_d: set[int] = set()
        for i, j in zip(ti, di, strict=True):
            if cost[i, j] >= _GATED:
                continue
            tracks[i].correct(dets.xyxy[rows[j]], t)
            matched[int(rows[j])] = tracks[i].track_id
            used_t.add(int(i))
            used_d.add(int(j))
        left = [tr for k, tr in enumerate(tracks) if k not in used_t]
        keep = np.array([k not in used_d for k in range(rows.size)], dtype=bool)
        return left, rows[keep]

    def _start_tracks(self, dets: Detections, rows: npt.NDArray[np.int64], t: float) -> None:
        for r in rows:
            if dets.confidence[r] >= self.cfg.new_track_threshold:
                self._tracks[self._next_id] = _Track.start(self._next_id, dets.xyxy[r], t)
                self._next_id += 1

    def _drop_expired(self, t: float) -> None:
        expired = [
            tr.track_id
            for tr in self._with_state(TrackState.LOST)
            if t - tr.last_seen > self.cfg.lost_seconds
        ]
        for track_id in expired:
            del self._tracks[track_id]
        if expired:
            log.debug("removed lost tracks %s at t=%.3f s", expired, t)
