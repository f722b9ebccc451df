"""Choose which decoded frames are analysed, on the media clock and without drift."""

from __future__ import annotations

import math
from datetime import timedelta
from fractions import Fraction

# A frame may reach its sample time this early (an eighth of the sample interval, at most 20 ms),
# so that jittery or coarsely rounded stamps (a 5 fps camera stamped 0, 199, 400, 599 ms) do not
# skip samples, while at a low analysis rate the frame nearest after the grid point still wins.
EARLY_FRACTION = Fraction(1, 8)
EARLY_MAX_S = Fraction(1, 50)


class FrameSampler:
    """Keeps the first frame that reaches each sample time ``k / analysis_fps``.

    Sample times form a fixed grid anchored at the first frame's time (0) and are computed from
    the counter ``k`` with exact fractions, so they never drift however long the source runs.
    After a frame is kept, the next sample time is the first grid point after it: a source slower
    than ``analysis_fps`` has every frame kept, and a gap in a variable-frame-rate source never
    causes a burst of kept frames.

    Args:
        analysis_fps: samples per second of media time, > 0.
    """

    def __init__(self, analysis_fps: float) -> None:
        if not analysis_fps > 0:
            raise ValueError(f"analysis_fps: expected > 0, got {analysis_fps}")
        self.rate = Fraction(analysis_fps).limit_denominator(1_000_000)
        self._early = min(EARLY_FRACTION / self.rate, EARLY_MAX_S)
        self._k = 0

    @property
    def next_time(self) -> Fraction:
        """Media time (seconds from the first frame) of the next sample."""
        return self._k / self.rate

    def keep(self, t: Fraction) -> bool:
        """Decide on the frame presented at ``t`` seconds after the first frame.

        Args:
            t: presentation time in seconds, relative to the first frame.

        Returns:
            True when the frame is to be analysed; the sampler then moves past ``t``.
        """
        if t + self._early < self.next_time:
            return False
        self._k = math.floor((t + self._early) * self.rate) + 1
        return True


def to_timedelta(seconds: Fraction) -> timedelta:
    """Exact seconds -> ``timedelta``, rounded once to the nearest microsecond."""
    return timedelta(microseconds=round(seconds * 1_000_000))
