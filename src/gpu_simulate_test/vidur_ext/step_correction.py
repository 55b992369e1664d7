"""The whole-step correction: what Vidur 0.0.26's step time has no term for, added to each step it predicts.

Vidur's step time is ``num_layers x`` the sum of its per-layer operators: nothing for the embedding, the final norm,
the LM head, sampling or the engine's host work (``specs/profiling_root.md``, "What Vidur's step leaves out"). A
bundle of the ``step`` variant carries those as one correction per step, fitted on its fit shapes only,

    correction_ms = c_iter_ms + c_token_ms * num_tokens_8

(``num_tokens_8``: the step's tokens rounded up to a multiple of 8, the count Vidur looks its token rows up with),
recorded as ``step_correction`` in ``profile_meta.json``. vidur-sim and the bundle's own checks apply it at run time,
inside the predictor (``predictor._LocalProfileMixin``): Vidur itself is never patched and the operator rows stay as
measured. It enters through Vidur's ``add`` row, the one per-layer term that depends on the tokens only, divided by
the layer count that Vidur multiplies it by again, so the step comes out exactly ``operators + correction``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

from gpu_simulate_test.errors import ArtifactError
from gpu_simulate_test.io.outputs import PROFILE_META

META_KEY = "step_correction"  # profile_meta.json: the correction vidur-sim applies (absent or null: none)


@dataclass(frozen=True)
class StepCorrection:
    c_iter_ms: float
    c_token_ms: float

    def ms(self, num_tokens_8: int) -> float:
        """The correction of one step of ``num_tokens_8`` tokens (already rounded up to a multiple of 8)."""
        return self.c_iter_ms + self.c_token_ms * num_tokens_8

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def step_correction(meta: Mapping[str, Any], source: str = PROFILE_META) -> Optional[StepCorrection]:
    """The correction a bundle's meta carries, None when it carries none (every bundle but the ``step`` variant's)."""
    record = meta.get(META_KEY)
    if record is None:
        return None
    try:
        return StepCorrection(float(record["c_iter_ms"]), float(record["c_token_ms"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{source}: {META_KEY!r} must hold numbers c_iter_ms and c_token_ms ({exc}); "
                            "rebuild the bundle") from exc
