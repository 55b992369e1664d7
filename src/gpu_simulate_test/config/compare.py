"""The ``compare`` group: how real and simulated runs are judged against each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List


@dataclass
class CompareConfig:
    """Report settings; ``tolerance_pct`` decides each metric's one-line verdict.

    ``percentiles`` must include 50, 90 and 99 (the headline table's columns). Plots draw at most
    ``max_plot_points`` points per series (a seeded subsample, or evenly spaced quantiles for CDFs),
    so a 10-million-token run plots as fast as a small one; statistics always use every value.
    """

    tolerance_pct: float = 10.0
    percentiles: List[float] = field(default_factory=lambda: [50.0, 90.0, 95.0, 99.0])
    timeline_requests: int = 5
    max_plot_points: int = 4000
    prefill_bin_edges: List[int] = field(default_factory=lambda: [0, 1, 64, 256, 1024, 4096])
