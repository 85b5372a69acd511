"""Training reference statistics and the drift statistics that compare live data with them.

>>> reference = build_reference(train_frame, uc, predictions, quality={"value": 0.91})
>>> psi_against(reference["features"]["salary"], live_salaries)
>>> ks_against(reference["features"]["salary"], live_salaries).p_value
>>> chi2_against(reference["features"]["elevel"], category_counts(live_onehot, categories))

Built by the trainer, stored with each model version by the registry, read by the monitor.
"""

from __future__ import annotations

from libs.reference.build import SCHEMA_VERSION, build_reference, numeric_summary, onehot_groups
from libs.reference.drift import (
    EPSILON,
    MISSING,
    StatResult,
    bin_counts,
    categories_of,
    category_counts,
    chi2_against,
    chi2_test,
    chi2_two_sample,
    ks_against,
    ks_test,
    psi,
    psi_against,
)

__all__ = [
    "EPSILON",
    "MISSING",
    "SCHEMA_VERSION",
    "StatResult",
    "bin_counts",
    "build_reference",
    "categories_of",
    "category_counts",
    "chi2_against",
    "chi2_test",
    "chi2_two_sample",
    "ks_against",
    "ks_test",
    "numeric_summary",
    "onehot_groups",
    "psi",
    "psi_against",
]
