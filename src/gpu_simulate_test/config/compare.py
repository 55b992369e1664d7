"""The ``compare`` group: how real and simulated runs are judged against each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List


@dataclass
class CompareConfig:
    """Report settings; ``tolerance_pct`` decides each metric's one-line verdict."""

    tolerance_pct: float = 10.0
    percentiles: List[float] = field(default_factory=lambda: [50.0, 90.0, 95.0, 99.0])
    timeline_requests: int = 5
