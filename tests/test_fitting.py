import numpy as np
import pytest

from sketchsim.harness.fitting import fit_power_law


def test_recovers_known_exponents_with_intervals():
    rng = np.random.default_rng(0)
    d = rng.choice([256, 1024, 4096, 16384], size=400)
    w = rng.choice([0.1, 0.2, 0.5, 1.0], size=400)
    y = 3.0 * d ** -0.5 * w ** -1.0 * np.exp(0.2 * rng.standard_normal(400))
    fit = fit_power_law(y, np.column_stack([d, w]), ["d", "w"])
    lo, hi = fit.interval("d")
    assert lo < -0.5 < hi and hi - lo < 0.1
    lo, hi = fit.interval("w")
    assert lo < -1.0 < hi
    assert fit.constant_ci[0] < 3.0 < fit.constant_ci[1]
    assert 0.0 < fit.violation_rate < 0.12
    assert fit.predict(d=1024, w=0.5) == pytest.approx(3.0 / 32 / 0.5, rel=0.1)


def test_wrong_exponent_is_outside_the_interval():
    rng = np.random.default_rng(1)
    d = rng.choice([256, 1024, 4096], size=200)
    y = d ** -0.25 * np.exp(0.1 * rng.standard_normal(200))
    lo, hi = fit_power_law(y, d[:, None], ["d"]).interval("d")
    assert not (lo < -0.5 < hi)


def test_needs_enough_rows():
    with pytest.raises(ValueError, match="at least 3 positive rows"):
        fit_power_law([1.0, 2.0], [[1.0], [2.0]], ["d"])
