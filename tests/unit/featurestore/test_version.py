"""Feature versions: stable, sensitive to the definition and the spec version."""

from __future__ import annotations

from libs.features import feature_of_column, feature_refs, feature_version, feature_versions
from libs.usecase import load_default

UC = load_default()["loan_approval"]


def test_versions_are_short_stable_hashes_per_feature() -> None:
    versions = feature_versions(UC)
    assert list(versions) == UC.model_inputs()
    assert all(len(v) == 12 for v in versions.values())
    assert versions == feature_versions(load_default()["loan_approval"])
    # One-hot columns carry the version of the feature they come from.
    assert versions["elevel__0"] == versions["elevel__4"] == feature_version(UC, "elevel")
    assert feature_of_column(UC, "zipcode__8") == "zipcode"


def test_a_changed_definition_or_spec_version_changes_the_version() -> None:
    base = feature_versions(UC)
    bumped = UC.model_copy(update={"version": UC.version + 1})
    assert all(feature_versions(bumped)[c] != base[c] for c in base)
    aggregates = [
        a.model_copy(update={"window": a.window * 2}) if a.name == "loan_mean_10m" else a
        for a in UC.features.aggregates
    ]
    changed = UC.model_copy(update={"features": UC.features.model_copy(update={"aggregates": aggregates})})
    after = feature_versions(changed)
    assert after["loan_mean_10m"] != base["loan_mean_10m"]
    assert {c for c in base if after[c] != base[c]} == {"loan_mean_10m"}


def test_refs_name_the_view_column_and_version() -> None:
    refs = feature_refs(UC)
    assert [r.name for r in refs] == UC.model_inputs()
    assert {r.view for r in refs} == {"loan_approval"}
    assert next(r for r in refs if r.name == "elevel__2").feature == "elevel"
