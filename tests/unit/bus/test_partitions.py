"""The vectorised murmur2 places every key exactly where aiokafka's DefaultPartitioner does."""

from __future__ import annotations

import os
import random

from aiokafka.partitioner import DefaultPartitioner, murmur2

from libs.bus.partitions import murmur2_many, partitions_for


def test_hashes_equal_aiokafkas_for_every_length_and_byte() -> None:
    rng = random.Random(5)
    keys = [os.urandom(n) for n in range(0, 41) for _ in range(20)]
    keys += [bytes(rng.choice([0, 0x7F, 0x80, 0xFF]) for _ in range(n)) for n in range(1, 13)]
    keys += [f"{os.urandom(8).hex()}{i:016x}".encode() for i in range(200)]  # prediction ids
    keys += [f"{os.urandom(8).hex()}{i:016x}/{i % 7}".encode() for i in range(50)]
    rng.shuffle(keys)
    assert [int(h) for h in murmur2_many(keys)] == [murmur2(k) & 0xFFFFFFFF for k in keys]


def test_partitions_equal_the_default_partitioners() -> None:
    keys = [os.urandom(n % 37) for n in range(500)]
    for parts in ([0], [0, 1, 2], [0, 1, 2, 3, 4, 5, 6], [3, 5, 9]):
        assert partitions_for(keys, parts) == [DefaultPartitioner()(k, parts, parts) for k in keys]
    assert partitions_for([], [0, 1]) == []
