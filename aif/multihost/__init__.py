"""The factory across hosts (issue #15): every service, Kafka, PostgreSQL, Redis, Triton
and the app on hosts of their own, on one Linux machine.

A host is a network namespace with its own address and name (:mod:`.topology`), its own
Unix user and a private folder no other host can read (:mod:`.hosts`). Infrastructure is
started there with :mod:`aif.infra`'s own components (:mod:`.infrahost`); the services get
their settings from the environment only, reach each other by name (``kafka:9092``,
``registry:50055``...) and hold only their own credentials; the app host onboards the use
cases with ``aif usecase apply`` and drives the closed loop with :mod:`aif.loop`
(:mod:`.client`). :mod:`.layout` runs it all and removes everything it made.

    sudo .venv/bin/python -m aif.multihost            # the proof; exit 1 unless the loop closed
    sudo .venv/bin/python -m aif.multihost cleanup    # remove what a killed run left

``make test-multihost`` runs it as a test (tests/multihost).
"""

from aif.multihost.layout import Outcome, cleanup_everything, render_hosts, run

__all__ = ["Outcome", "cleanup_everything", "render_hosts", "run"]
