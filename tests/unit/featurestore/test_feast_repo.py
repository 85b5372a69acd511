"""The Feast repo is generated from the specs, and its definitions are real Feast objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.errors import ConfigError
from libs.features import feature_versions
from libs.usecase import load_default
from services.featurestore.store import feast_repo
from services.featurestore.store.layout import RECORD_ID, Layout

USECASES = load_default()


def test_redis_url_becomes_feast_connection_string() -> None:
    assert feast_repo.redis_connection_string("redis://127.0.0.1:6379/0") == "127.0.0.1:6379,db=0"
    assert feast_repo.redis_connection_string("redis://:pw@cache:6380/2") == "cache:6380,db=2,password=pw"
    with pytest.raises(ConfigError, match="redis_url"):
        feast_repo.redis_connection_string("http://nope")


def test_yaml_picks_the_online_store(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "repo", tmp_path / "data")
    sqlite = feast_repo.render_yaml(layout, "proj", "sqlite", "")
    assert "type: services.featurestore.store.sqlite.BatchedSqliteOnlineStore" in sqlite
    assert str(tmp_path / "repo" / "online.db") in sqlite
    redis = feast_repo.render_yaml(layout, "proj", "redis", "redis://127.0.0.1:6379/1")
    assert 'connection_string: "127.0.0.1:6379,db=1"' in redis and "type: file" in redis


def test_definitions_declare_one_view_per_use_case(tmp_path: Path) -> None:
    from feast import Entity, FeatureView, FileSource

    layout = Layout(tmp_path / "repo", tmp_path / "data")
    feast_repo.generate(layout, USECASES, project="proj", online_store="sqlite", redis_url="")
    objects = feast_repo.definitions(layout)
    views = {o.name: o for o in objects if isinstance(o, FeatureView)}
    assert set(views) == set(USECASES)
    for name, uc in USECASES.items():
        view = views[name]
        assert view.ttl == uc.features.ttl
        fields = {f.name: f for f in view.features}
        assert list(fields) == [RECORD_ID, *uc.model_inputs()]
        versions = feature_versions(uc)
        assert all(fields[c].tags["version"] == versions[c] for c in uc.model_inputs())
        assert view.entity_columns[0].name == uc.entity.field
        assert view.batch_source.path == str(layout.features_dir(uc))
    assert sum(isinstance(o, Entity) for o in objects) == sum(isinstance(o, FileSource) for o in objects) == 2
    assert layout.features_dir(USECASES["loan_approval"]).is_dir()
