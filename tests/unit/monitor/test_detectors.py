import random

from services.monitor.detectors import CusumDetector, change_point


def stream(p0: float, p1: float, onset: int, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [1.0 if rng.random() < (p0 if i < onset else p1) else 0.0 for i in range(n)]


def test_classification_error_shift_is_detected_soon_and_not_before() -> None:
    delays = []
    for seed in range(20):
        det = CusumDetector(quality_drop=0.1)
        alarms = [i for i, e in enumerate(stream(0.08, 0.3, 3000, 5000, seed)) if det.update(e)]
        assert all(a >= 3000 for a in alarms), f"false alarm in stream {seed}: {alarms}"
        assert alarms, f"missed drift in stream {seed}"
        delays.append(alarms[0] - 3000)
    assert sorted(delays)[len(delays) // 2] < 120


def test_no_alarm_during_burn_in_and_on_a_stationary_stream() -> None:
    det = CusumDetector(quality_drop=0.1, burn_in=300)
    assert not any(det.update(e) for e in stream(0.2, 0.2, 0, 20_000, 7))
    assert det.calibrated and 0.18 < (det.baseline or 0) < 0.25


def test_regression_relative_increase_of_absolute_error() -> None:
    rng = random.Random(3)
    det = CusumDetector(quality_drop=0.2, regression=True)
    errors = [abs(rng.gauss(0, 1.0 if i < 2000 else 1.6)) for i in range(4000)]
    alarms = [i for i, e in enumerate(errors) if det.update(e)]
    assert alarms and alarms[0] >= 2000 and alarms[0] - 2000 < 300


def test_change_point_is_where_the_worse_stretch_begins() -> None:
    # 300 records at 5% error, then 50%: the estimate lands on the first error of the shift.
    errors = [1.0 if i % 20 == 0 else 0.0 for i in range(300)] + [float(i % 2) for i in range(200)]
    assert change_point(errors, baseline=0.06) == 301
    # A stretch no worse than the baseline has no change point.
    assert change_point([1.0 if i % 20 == 0 else 0.0 for i in range(300)], baseline=0.06) is None
    assert change_point([], baseline=0.1) is None


def test_regression_change_point_on_absolute_errors() -> None:
    rng = random.Random(11)
    errors = [abs(rng.gauss(0, 1.0)) for _ in range(400)] + [abs(rng.gauss(0, 2.5)) for _ in range(200)]
    k = change_point(errors, baseline=0.85, regression=True)
    assert k is not None and 380 <= k <= 420, k
