"""libs.rpc's one channel factory: plaintext without TLS settings, TLS with them."""

from __future__ import annotations

import pytest

from libs.rpc import ClientTls, channel


async def test_a_plain_channel_refuses_a_token_it_would_never_send() -> None:
    with pytest.raises(ValueError, match="plain"):
        channel("127.0.0.1:1", None, plain=True, token="t")


def test_server_name_becomes_the_target_name_override() -> None:
    assert ClientTls(b"ca", server_name="registry").options() == [
        ("grpc.ssl_target_name_override", "registry")
    ]
    assert ClientTls(b"ca").options() == []
