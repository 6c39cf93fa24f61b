"""Fixtures of the runtime tests: the session's exported tiny models."""

import pytest

from .models import Repository, shared_repository


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    return shared_repository(tmp_path_factory)
