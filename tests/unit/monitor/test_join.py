from datetime import timedelta

from services.monitor.join import Joiner
from tests.unit.monitor.helpers import outcome, prediction

HOUR = timedelta(hours=1)


def test_a_late_label_within_max_delay_is_joined() -> None:
    join = Joiner(HOUR)
    assert join.add_prediction(prediction(1, seconds=0)) is None
    labelled = join.add_outcome(outcome(1, 1, seconds=3599))
    assert labelled is not None and labelled.prediction.prediction_id == "p1" and labelled.error == 0.0
    assert join.counts.joined == 1 and join.waiting == (0, 0)


def test_a_label_beyond_max_delay_is_dropped_and_counted() -> None:
    join = Joiner(HOUR)
    join.add_prediction(prediction(1, seconds=0))
    assert join.add_outcome(outcome(1, 1, seconds=3601)) is None
    assert join.counts.late == 1 and join.counts.joined == 0 and join.waiting == (0, 0)


def test_feedback_before_its_prediction_is_held_and_joined() -> None:
    join = Joiner(HOUR)
    assert join.add_outcome(outcome(7, 0, seconds=30)) is None
    assert join.waiting == (0, 1)
    labelled = join.add_prediction(prediction(7, seconds=0, score=0.9))
    assert labelled is not None and labelled.error == 1.0  # predicted 1, observed 0
    assert join.counts.joined == 1 and join.waiting == (0, 0)


def test_unlabelled_predictions_expire_by_the_feedback_streams_time() -> None:
    join = Joiner(HOUR)
    for i in range(5):
        join.add_prediction(prediction(i, seconds=i))
    # Predictions alone never expire each other: the feedback stream may just be behind.
    join.add_prediction(prediction(99, seconds=10 * 3600))
    assert join.counts.expired == 0 and join.waiting == (6, 0)
    # An outcome observed past their deadline says no outcome for them can still come in time.
    join.add_outcome(outcome(99, 1, seconds=10 * 3600 + 5))
    assert join.counts.expired == 5 and join.counts.joined == 1 and join.waiting == (0, 0)


def test_feedback_whose_prediction_never_comes_is_counted_unmatched() -> None:
    join = Joiner(HOUR)
    join.add_outcome(outcome(1, 1, seconds=100))
    join.add_prediction(prediction(2, seconds=100 + 3600 + 1))
    assert join.counts.unmatched == 1 and join.waiting == (1, 0)


def test_redelivered_events_have_no_second_effect() -> None:
    join = Joiner(HOUR)
    join.add_prediction(prediction(1, seconds=0))
    join.add_prediction(prediction(1, seconds=0))
    assert join.add_outcome(outcome(1, 1, seconds=5)) is not None
    assert join.add_outcome(outcome(1, 1, seconds=5)) is None
    assert join.add_prediction(prediction(1, seconds=0)) is None
    assert join.counts.joined == 1 and join.counts.duplicates == 3 and join.waiting == (0, 0)


def test_memory_is_bounded() -> None:
    join = Joiner(HOUR, capacity=100)
    for i in range(1000):
        join.add_prediction(prediction(i, seconds=i * 0.001))
        join.add_outcome(outcome(10_000 + i, 1, seconds=i * 0.001))
    assert join.waiting == (100, 100)
    assert join.counts.expired == 900 and join.counts.unmatched == 900
    assert len(join._p_heap) <= 2 * 100 + 1024 and len(join._done) <= 100
