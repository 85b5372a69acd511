"""Prediction ids: 32 hex characters, unguessable, without a system call per id.

An id is 128 bits straight from the kernel's CSPRNG (``os.urandom``), so knowing any
number of ids tells nothing about the next one: a prediction id is what a caller
presents to record feedback, and a guessable one (a counter) would let anyone claim
another app's predictions. The random bytes are drawn in blocks of ``_BLOCK`` ids, so
an id costs a slice and a ``hex()`` (~0.3 µs) where ``uuid4`` reads the kernel's random
source each time (~3 µs, on the reply path of every request that brings no id of its
own). A process that forks must drop its block (:func:`reseed`), or parent and child
would hand out the same ids; the gateway does not fork.
"""

from __future__ import annotations

import os

_ID_BYTES = 16
_BLOCK = 4096  # ids per draw from the kernel (64 KiB)

_pool = b""
_next = 0


def prediction_id() -> str:
    global _pool, _next
    start = _next
    if start >= len(_pool):
        _pool = os.urandom(_ID_BYTES * _BLOCK)
        start = 0
    _next = start + _ID_BYTES
    return _pool[start : start + _ID_BYTES].hex()


def reseed() -> None:
    """Forget the drawn block (after a fork): the next id draws a new one."""
    global _pool, _next
    _pool = b""
    _next = 0
