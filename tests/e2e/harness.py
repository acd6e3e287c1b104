"""Start a real JupyterLab and drive it with Playwright in Debian's Chromium.

Used by the end-to-end tests (tests/e2e) and the browser benchmark (bench/browser.py).
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
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LENSWIDGET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def jupyter_lab(base: Path, python: str | os.PathLike = sys.executable, env: dict | None = None) -> Iterator[dict]:
    """A JupyterLab server on 127.0.0.1 over a copy of notebooks/ in ``base``; yields url/token/root.
    ``python`` runs the server (and so the kernel); ``env`` adds environment variables."""
    root = base / "root"
    shutil.copytree(REPO / "notebooks", root)
    config = base / "config"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    port, token = _free_port(), "lenswidget-e2e"
    env = {**dict(os.environ, JUPYTER_CONFIG_DIR=str(config), JUPYTER_RUNTIME_DIR=str(base / "runtime"),
                  JUPYTER_DATA_DIR=str(base / "data"), PYTHONUNBUFFERED="1"), **(env or {})}
    cmd = [
        str(python), "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.expose_app_in_browser=True", "--allow-root",
    ]
    log_path = base / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        try:
            while True:
                try:
                    urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                    break
                except Exception:
                    if proc.poll() is not None or time.time() > deadline:
                        raise RuntimeError("JupyterLab did not start:\n" + log_path.read_text()[-3000:])
                    time.sleep(0.5)
            yield {"url": url, "token": token, "root": root, "log": log_path}
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def chromium() -> Iterator[object]:
    """A headless Debian Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"Chromium not found at {CHROMIUM}: run `make chromium` (apt-get install chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Lab:
    """One notebook open in JupyterLab."""

    def __init__(self, page, server):
        self.page = page
        self.server = server

    def write_notebook(self, name: str, cells: list[str]) -> str:
        """Write a notebook of code ``cells`` into the server's root (a copy of notebooks/); returns ``name``."""
        nb = {
            "cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [], "source": src}
                      for i, src in enumerate(cells)],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5,
        }
        (Path(self.server["root"]) / name).write_text(json.dumps(nb, indent=1))
        return name

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

    def wait_python(self, expr: str, expected, timeout: float = 120) -> None:
        """Poll the kernel until ``expr`` (JSON-able) equals ``expected`` (a click's effect arriving)."""
        deadline = time.time() + timeout
        while (value := self.python_json(expr)) != expected:
            assert time.time() < deadline, f"{expr} = {value!r}, expected {expected!r}"
            time.sleep(0.2)


@contextmanager
def new_lab(browser, jupyter_server, notebook: str | None = None, run_all_ms: int = 0):
    """A fresh browser context on the server, with ``notebook`` opened (and run, given
    ``run_all_ms``); closed on exit."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    lab = Lab(page, jupyter_server)
    if notebook:
        lab.open(notebook)
    if run_all_ms:
        lab.run_all(timeout_ms=run_all_ms)
    try:
        yield lab
    finally:
        context.close()
