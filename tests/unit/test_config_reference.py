"""docs/configuration.md is the settings classes, rendered: stale means a setting changed
without the reference (regenerate with ``python -m aif.docs.config``)."""

from __future__ import annotations

from aif.docs import config


def test_configuration_reference_is_fresh() -> None:
    expected = config.render()
    actual = config.TARGET.read_text() if config.TARGET.is_file() else ""
    assert actual == expected, "docs/configuration.md is stale: run `python -m aif.docs.config`"


def test_every_setting_of_every_service_is_documented() -> None:
    text = config.render()
    classes = config.service_classes()
    assert [c.service for c in classes] == list(config.SERVICES)
    missing = []
    for cls in classes:
        for name in cls.model_fields:
            own = f"`AIF_{cls.service.upper()}_{name.upper()}`"
            shared = f"`AIF_<SERVICE>_{name.upper()}`"
            # Declared by the service: its own row; inherited: the row of a group it includes.
            if own not in text and not (name not in config.own_fields(cls) and shared in text):
                missing.append(f"{cls.service}.{name}")
    assert not missing, missing


def test_descriptions_come_from_the_comments_above_each_field() -> None:
    from services.gateway.settings import GatewaySettings

    notes = config.comments(GatewaySettings)
    assert notes["infer_timeout_s"].startswith("Deadline of one inference call to Triton")
    assert "grpc_port + 20" in notes["http_port"]
    assert notes["coalesce_max_rows"] == "See `coalesce_inflight` above."
    # Paths inside the checkout are written relative to it, so the file is the same in any clone.
    assert str(config.REPO_ROOT) not in config.render()
