"""Metrics primitives: mergeable latency histograms and time-weighted levels."""

from gridsim.metrics.histogram import BUFFER_SIZE, LogHistogram
from gridsim.metrics.levels import TimeWeighted

__all__ = ["BUFFER_SIZE", "LogHistogram", "TimeWeighted"]
