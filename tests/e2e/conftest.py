"""Fixtures for the end-to-end tests: one JupyterLab server and one Chromium per test session."""

from __future__ import annotations

import pytest

from .harness import Lab, chromium, jupyter_lab


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
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield Lab(page, jupyter_server)
    context.close()
