"""Fixtures of the runtime tests: the session's exported tiny models, and the shipped demo model."""

from pathlib import Path

import pytest

from .models import Repository, shared_demo_repository, shared_repository


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    return shared_repository(tmp_path_factory)


@pytest.fixture(scope="session")
def demo_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_demo_repository(tmp_path_factory)
