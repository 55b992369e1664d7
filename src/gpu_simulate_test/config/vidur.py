"""The ``vidur`` group: how the simulator is driven (predictor, limits)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class VidurConfig:
    """Settings of the Vidur run that are not dictated by model, hardware or backend."""

    execution_time_predictor: str = "random_forrest"  # Vidur's own spelling: random_forrest | linear_regression
    # Cap of the predictor's pre-computed grid; null: the workload's longest request, rounded up.
    prediction_max_tokens_per_request: Optional[int] = None
    num_replicas: int = 1
