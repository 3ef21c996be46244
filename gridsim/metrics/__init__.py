"""Metrics primitives: mergeable latency histograms and the Recorder that fills them."""

from gridsim.metrics.histogram import LogHistogram

__all__ = ["LogHistogram"]
