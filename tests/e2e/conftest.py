"""Fixtures for the end-to-end tests: one JupyterLab server and one Chromium per test session."""

from __future__ import annotations

import pytest

from .harness import chromium, jupyter_lab, new_lab


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory):
    with jupyter_lab(tmp_path_factory.mktemp("lab")) as server:
        yield server


@pytest.fixture(scope="session")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture()
def lab(browser, jupyter_server):
    with new_lab(browser, jupyter_server) as lab:
        yield lab
