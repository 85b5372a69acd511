"""The registry's check of an uploaded model, run in a sandbox (a TorchScript artifact is code).

:func:`validate_torchscript` runs :func:`services.registry.export.validate_torchscript`
(load, one forward pass, the I/O contract) in a fresh child process under
:mod:`libs.sandbox`'s limits, so an artifact whose forward pass never ends, or that
allocates without bound, is refused with a clear ``InvalidArgument`` ("artifact forward
pass exceeded 20 s") and the registry's own process never runs its code.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

from libs import sandbox
from services.registry.domain import Signature

# (artifact digest, signature) of the checks that passed, most recent last.
_REMEMBERED = 1024
_passed: OrderedDict[tuple[str, str], None] = OrderedDict()
_lock = threading.Lock()


def validate_torchscript(
    content: bytes,
    signature: Signature,
    field: str = "artifact_content",
    limits: sandbox.Limits = sandbox.Limits(),  # noqa: B008 - frozen dataclass
) -> None:
    """Refuse an artifact that breaks the I/O contract or a sandbox limit (InvalidArgument).

    An artifact that passed against the same signature is not run again: each check
    starts a process that imports torch (seconds), and the same digest is often
    registered again (by ``artifact_sha256`` after an upload, or for several versions)."""
    key = (hashlib.sha256(content).hexdigest(), json.dumps(signature.to_json(), sort_keys=True))
    with _lock:
        if key in _passed:
            _passed.move_to_end(key)
            return
    sandbox.run(
        f"{__name__}:check_in_child",
        content,
        args={"signature": signature.to_json(), "field": field},
        limits=limits,
        field=field,
    )
    with _lock:
        _passed[key] = None
        while len(_passed) > _REMEMBERED:
            _passed.popitem(last=False)


def check_in_child(content: bytes, signature: dict[str, Any], field: str) -> bytes:
    """Runs inside the sandbox only."""
    import torch

    from services.registry.export import validate_torchscript as check

    torch.set_num_threads(1)
    check(content, Signature.from_json(signature), field)
    return b""
