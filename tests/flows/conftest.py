"""The one Prefect test server of the session, shared by every flow test (train-eval, vocab-refresh,
classify-collection): starting a second harness would cost ~10 s and a second SQLite database."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect server (SQLite) for the whole session; results stored under tmp."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect_results")
    with prefect_test_harness(server_startup_timeout=180):
        with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: storage}):
            yield
