"""Builds the wheel with the gateway's generated contracts taken from the factory's proto/.

The client talks to the gateway with the code ``deploy/tools/proto.sh gen`` generated
(the one source of every contract, checked fresh in CI): at build time the modules of
``aifactory.common.v1`` and ``aifactory.gateway.v1`` are copied from ``../../proto``
into the wheel, so no copy of them is kept here to drift. Build from a checkout
(``pip install clients/python``, ``pip wheel clients/python``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PROTO = HERE.parents[1] / "proto"
# The contracts the client imports, relative to proto/ (the import path of each).
CONTRACTS = [
    "aifactory/__init__.py",
    "aifactory/common/__init__.py",
    "aifactory/common/v1/__init__.py",
    "aifactory/common/v1/common_pb2.py",
    "aifactory/common/v1/common_pb2.pyi",
    "aifactory/gateway/__init__.py",
    "aifactory/gateway/v1/__init__.py",
    "aifactory/gateway/v1/gateway_service_pb2.py",
    "aifactory/gateway/v1/gateway_service_pb2.pyi",
    "aifactory/gateway/v1/gateway_service_pb2_grpc.py",
]


class BuildWithContracts(build_py):
    def run(self) -> None:
        super().run()
        missing = [rel for rel in CONTRACTS if not (PROTO / rel).is_file()]
        if missing:
            raise SystemExit(
                f"aifactory-client: {', '.join(missing)} not found under {PROTO}: build from a "
                "checkout of the factory after `make proto`"
            )
        for rel in CONTRACTS:
            target = Path(self.build_lib) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(PROTO / rel, target)


setup(cmdclass={"build_py": BuildWithContracts})
