"""Statistics of the synthetic length distributions and the arrival processes."""

from __future__ import annotations

import numpy as np
import pytest

from gpu_simulate_test.config.workload import ArrivalConfig, LengthDistConfig
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.workloads.arrivals import ARRIVAL_PROCESSES, NS_PER_S, arrival_times
from gpu_simulate_test.workloads.lengths import LENGTH_SAMPLERS, sample_lengths

N = 20_000


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_lognormal_median_and_spread() -> None:
    d = LengthDistConfig(median=300, sigma=0.5, min=1, max=100_000)
    x = sample_lengths("lognormal", d, rng(), N, "prefill")
    assert abs(np.median(x) / 300 - 1) < 0.03
    assert abs(np.std(np.log(x)) - 0.5) < 0.02


def test_every_distribution_is_clipped_to_bounds_and_integer() -> None:
    d = LengthDistConfig(value=5000, min=50, max=400, mean=200, std=300, median=200, sigma=2.0, theta=1.1)
    for kind in LENGTH_SAMPLERS:
        x = sample_lengths(kind, d, rng(), N, "prefill")
        assert x.dtype == np.int64 and x.min() >= 50 and x.max() <= 400, kind
    # wide distributions really hit both bounds (clipping, not resampling)
    x = sample_lengths("normal", d, rng(), N, "prefill")
    assert (x == 50).sum() > 1000 and (x == 400).sum() > 1000
    assert (sample_lengths("fixed", d, rng(), 10, "prefill") == 400).all()


def test_normal_uniform_and_zipf_shapes() -> None:
    d = LengthDistConfig(mean=500, std=50, min=1, max=10_000)
    assert abs(sample_lengths("normal", d, rng(), N, "decode").mean() - 500) < 2
    u = sample_lengths("uniform", LengthDistConfig(min=10, max=20), rng(), N, "decode")
    assert set(np.unique(u)) == set(range(10, 21))
    z = sample_lengths("zipf", LengthDistConfig(min=1, max=100, theta=1.2), rng(), N, "decode")
    counts = np.bincount(z, minlength=101)
    # P(k) ~ k^-theta: P(1)/P(2) = 2^1.2 ~ 2.3
    assert abs(counts[1] / counts[2] - 2**1.2) < 0.25
    assert counts[1] > counts[10] > counts[100]


def test_lengths_are_seeded() -> None:
    d = LengthDistConfig(median=100, sigma=1.0, min=1, max=1000)
    a = sample_lengths("lognormal", d, rng(1), 100, "prefill")
    assert np.array_equal(a, sample_lengths("lognormal", d, rng(1), 100, "prefill"))
    assert not np.array_equal(a, sample_lengths("lognormal", d, rng(2), 100, "prefill"))


@pytest.mark.parametrize("bad", [LengthDistConfig(min=0, max=10), LengthDistConfig(min=10, max=5)])
def test_bad_bounds_are_errors(bad: LengthDistConfig) -> None:
    with pytest.raises(InputError, match="min <= max"):
        sample_lengths("uniform", bad, rng(), 10, "prefill")


def test_poisson_mean_rate_and_exponential_gaps() -> None:
    t = arrival_times(ArrivalConfig(process="poisson", qps=8.0), N, rng(), None)
    assert t.dtype == np.int64 and t[0] == 0 and (np.diff(t) >= 0).all()
    rate = (N - 1) / (t[-1] / NS_PER_S)
    assert abs(rate / 8.0 - 1) < 0.03
    gaps = np.diff(t).astype(float)
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.05


@pytest.mark.parametrize("cv", [0.5, 3.0])
def test_gamma_cv_and_rate(cv: float) -> None:
    t = arrival_times(ArrivalConfig(process="gamma", qps=5.0, cv=cv), N, rng(), None)
    gaps = np.diff(t).astype(float)
    assert abs(gaps.std() / gaps.mean() / cv - 1) < 0.08
    assert abs((N - 1) / (t[-1] / NS_PER_S) / 5.0 - 1) < 0.08


def test_constant_all_at_once_and_trace() -> None:
    c = arrival_times(ArrivalConfig(process="constant", qps=4.0), 5, rng(), None)
    assert c.tolist() == [0, 250_000_000, 500_000_000, 750_000_000, 1_000_000_000]
    assert arrival_times(ArrivalConfig(process="all_at_once"), 3, rng(), None).tolist() == [0, 0, 0]
    ts = np.array([10, 10, 13, 20], dtype=np.int64) * NS_PER_S
    tr = arrival_times(ArrivalConfig(process="trace", time_scale=0.5), 4, rng(), ts)
    assert tr.tolist() == [0, 0, 1_500_000_000, 5_000_000_000]


def test_arrival_config_errors() -> None:
    with pytest.raises(InputError, match="qps"):
        arrival_times(ArrivalConfig(process="poisson", qps=0), 3, rng(), None)
    with pytest.raises(InputError, match="cv"):
        arrival_times(ArrivalConfig(process="gamma", cv=0), 3, rng(), None)
    with pytest.raises(InputError, match="has none"):
        arrival_times(ArrivalConfig(process="trace"), 3, rng(), None)
    with pytest.raises(InputError, match=f"choose one of {sorted(ARRIVAL_PROCESSES)}".replace("[", r"\[")):
        arrival_times(ArrivalConfig(process="burst"), 3, rng(), None)
