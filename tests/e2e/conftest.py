"""Real JupyterLab + real Chromium (Debian's), driven by Playwright.

A session-scoped JupyterLab server runs on 127.0.0.1 with a token and temporary config, data and
root dirs (the notebooks are copied there, so tests never change the repo's). `lab` gives a
helper that opens a notebook, runs it, waits on the kernel through `window.jupyterapp`, and runs
Python in the notebook's own kernel to compare what the page draws with what Python computes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LENSWIDGET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `make chromium` (apt-get install chromium)")
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    shutil.copytree(REPO / "notebooks", root)
    config = base / "config"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    port, token = _free_port(), "lenswidget-e2e"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config), JUPYTER_RUNTIME_DIR=str(base / "runtime"),
               JUPYTER_DATA_DIR=str(base / "data"), PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.expose_app_in_browser=True", "--allow-root",
    ]
    log = open(base / "server.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except Exception:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError("JupyterLab did not start:\n" + (base / "server.log").read_text()[-3000:])
            time.sleep(0.5)
    yield {"url": url, "token": token, "root": root}
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Lab:
    """One notebook open in JupyterLab."""

    def __init__(self, page, server):
        self.page = page
        self.server = server

    def open(self, notebook: str) -> None:
        s = self.server
        self.page.goto(f"{s['url']}/lab/tree/{notebook}?token={s['token']}&reset")
        self.page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.shell.currentWidget "
            "&& window.jupyterapp.shell.currentWidget.sessionContext "
            "&& window.jupyterapp.shell.currentWidget.sessionContext.session "
            "&& window.jupyterapp.shell.currentWidget.sessionContext.session.kernel",
            timeout=60_000,
        )
        self.page.wait_for_function(
            "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.connectionStatus === 'connected'",
            timeout=60_000,
        )

    def run_all(self, timeout_ms: int = 240_000) -> None:
        """Run every cell and wait until the kernel has finished them all."""
        self.page.evaluate(
            """async () => {
                const panel = window.jupyterapp.shell.currentWidget;
                await panel.sessionContext.ready;
                await window.jupyterapp.commands.execute('notebook:run-all-cells');
            }"""
        )
        self.wait_idle(timeout_ms)
        errors = self.page.evaluate(
            """() => Array.from(document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], .jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]')).map(e => e.textContent)"""
        )
        tracebacks = [e for e in errors if "Traceback" in e or "Error" in e.split("\n")[0]]
        assert not tracebacks, tracebacks

    def wait_idle(self, timeout_ms: int = 120_000) -> None:
        # the kernel status is 'busy' while any cell or comm message is being handled
        self.page.wait_for_function(
            """() => {
                const panel = window.jupyterapp.shell.currentWidget;
                const cells = panel.content.widgets;
                const pending = cells.some(c => c.model.type === 'code' && c.promptNode && c.promptNode.textContent.includes('*'));
                return !pending && panel.sessionContext.session.kernel.status === 'idle';
            }""",
            timeout=timeout_ms,
            polling=200,
        )

    def python(self, code: str, timeout_ms: int = 60_000) -> str:
        """Run ``code`` in the notebook's kernel and return its stdout (raises on a Python error)."""
        out = self.page.evaluate(
            """async (code) => {
                const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
                const future = kernel.requestExecute({code, store_history: false});
                let out = '', err = null;
                future.onIOPub = (msg) => {
                    const t = msg.header.msg_type;
                    if (t === 'stream') out += msg.content.text;
                    if (t === 'error') err = msg.content.ename + ': ' + msg.content.evalue;
                };
                await future.done;
                return {out, err};
            }""",
            code,
        )
        if out["err"]:
            raise AssertionError(f"kernel error: {out['err']}\n{code}")
        return out["out"]

    def python_json(self, expr: str):
        return json.loads(self.python(f"import json as _j; print(_j.dumps({expr}))"))


@pytest.fixture()
def lab(browser, jupyter_server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield Lab(page, jupyter_server)
    context.close()
