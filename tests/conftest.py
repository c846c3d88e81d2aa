"""Session-wide fixtures that more than one test module shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from panoramax_support import PanoramaxServer, PostgresCluster, cluster, missing, server


@pytest.fixture(scope="session")
def panoramax_cluster() -> Iterator[PostgresCluster]:
    """PostgreSQL + PostGIS with a migrated geovisio template, for the whole session.

    Not skipped when geovisio is missing: .ci/run installs it, so a missing install is a failure.
    """
    why = missing()
    if why:
        pytest.fail(f"the real Panoramax backend cannot run: {why}")
    with cluster() as c:
        yield c


@pytest.fixture
def panoramax(panoramax_cluster: PostgresCluster) -> Iterator[PanoramaxServer]:
    """A fresh geovisio instance (its own database) where uploads need a token."""
    with server(panoramax_cluster, auth=True) as s:
        yield s


@pytest.fixture
def panoramax_open(panoramax_cluster: PostgresCluster) -> Iterator[PanoramaxServer]:
    """A fresh geovisio instance with auth off: anonymous uploads land on the default account."""
    with server(panoramax_cluster, auth=False) as s:
        yield s
