"""Tracking and counting: boxes with ids from detections, crossings from tracks."""

from truckcount.aggregator.lines import LineCounter
from truckcount.aggregator.tracker import Tracker

__all__ = ["LineCounter", "Tracker"]
