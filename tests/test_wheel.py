"""The package as users get it: a wheel built from a fresh clone carries the JS bundles and works
when installed into a fresh virtual environment (no `make`, no source checkout on the path).

Slow (a clone, a wheel build with npm, a venv): marked ``slow``. The fresh venv borrows the
dependencies of this checkout's environment through a ``.pth`` line (an import path only: the
checkout's editable install of lenswidget is not active there), and gets the wheel with
``--no-deps``, so nothing is downloaded but the build backend.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _bundles() -> list[str]:
    return [f"lenswidget/static/{p.stem}.js" for p in sorted((ROOT / "js").glob("*.ts"))] + ["lenswidget/static/lenswidget.css"]


def test_built_bundles_use_the_default_export_form():
    """anywidget warns ("Direct export of a 'render' will likely be deprecated") on a module that
    exports `render` by name; every bundle exports only its default object."""
    for name in _bundles():
        if not name.endswith(".js"):
            continue
        text = (ROOT / "src" / name).read_text()
        tail = text[text.rindex("export{") :]
        assert " as default" in tail, name
        assert " as render" not in tail and "render}" not in tail.replace("{render:", ""), (name, tail[:120])


@pytest.mark.skipif(shutil.which("git") is None or shutil.which("npm") is None, reason="needs git and npm")
def test_wheel_from_a_fresh_clone_installs_and_serves_its_bundles(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{ROOT}", str(clone)], check=True)
    assert not list((clone / "src" / "lenswidget" / "static").glob("*.js"))  # bundles are not committed
    if (ROOT / "node_modules").is_dir():  # the locked packages, without a second `npm ci`
        (clone / "node_modules").symlink_to(ROOT / "node_modules")
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(clone)],
        check=True, timeout=300,
    )
    wheel = next(out.glob("lenswidget-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [b for b in _bundles() if b not in names]
    assert not missing, missing

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)],
                   check=True, timeout=300)
    code = (
        "import lenswidget; from lenswidget import models, Lens; from lenswidget.widgets import base;"
        "g = Lens(models.toy()).attention('the cat sat on the mat');"
        "print(lenswidget.__file__); print(base.STATIC / 'attention.js'); print(len(str(g._esm).encode()));"
        "print('missing' in str(g._esm)[:2000])"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([py, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    file, esm, esm_len, missing_message = res.stdout.strip().splitlines()[-4:]
    assert file.startswith(str(venv)), file  # the installed wheel, not this checkout
    assert esm.startswith(str(venv)) and Path(esm).stat().st_size > 10_000
    assert int(esm_len) == Path(esm).stat().st_size and missing_message == "False"  # the widget serves it

    # JupyterLab started from that venv renders a widget from the wheel's bundle
    _render_in_jupyterlab(py, venv, tmp_path)


#: the kernel's own view of what it imported, then one widget displayed
LAB_CELL = """import lenswidget, json
from lenswidget import models, Lens
from lenswidget.widgets import base
print(json.dumps([lenswidget.__file__, str(base.STATIC)]))
grid = Lens(models.toy()).attention("the cat sat on the mat")
grid"""

#: run in a separate process (a second Playwright in this thread fails when the e2e session's is open)
BROWSER_SCRIPT = """import json, sys
sys.path.insert(0, sys.argv[1])
from tests.e2e.harness import Lab, chromium
server = json.loads(sys.argv[2])
with chromium() as browser:
    page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
    lab = Lab(page, server)
    lab.open("wheel.ipynb")
    lab.run_all(120_000)
    grid = page.locator('[data-testid="lw-grid"]').first
    grid.wait_for(state="visible", timeout=60_000)
    page.wait_for_function("(g) => !!g.dataset.drawMs", arg=grid.element_handle())
    out = page.locator('.jp-OutputArea-output').first.text_content()
    print(json.dumps({"rows": grid.get_attribute("data-rows"), "cols": grid.get_attribute("data-cols"),
                      "paths": json.loads(out.strip().splitlines()[0]), "kernel": lab.python_json("[len(grid.tokens), grid.n_layers]")}))
"""


def _render_in_jupyterlab(py: Path, venv: Path, tmp_path: Path) -> None:
    """Start JupyterLab with the fresh venv's Python (server and kernel), open a notebook that
    displays an AttentionGrid, and read what Chromium drew. JupyterLab's own assets and the
    widget front-end extensions live in this checkout's environment: found through JUPYTER_PATH."""
    import json

    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("playwright")
    from tests.e2e.harness import CHROMIUM, jupyter_lab

    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    share = Path(sys.prefix) / "share" / "jupyter"
    env = {"JUPYTER_PATH": str(share), "JUPYTERLAB_DIR": str(share / "lab"),
           "JUPYTER_CONFIG_PATH": str(Path(sys.prefix) / "etc" / "jupyter"), "PYTHONPATH": ""}
    with jupyter_lab(tmp_path / "lab", python=py, env=env) as server:
        nb = nbformat.v4.new_notebook()
        nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
        nb.cells = [nbformat.v4.new_code_cell(LAB_CELL)]
        nbformat.write(nb, server["root"] / "wheel.ipynb")
        arg = json.dumps({k: str(v) for k, v in server.items()})
        res = subprocess.run([sys.executable, "-c", BROWSER_SCRIPT, str(ROOT), arg], capture_output=True,
                             text=True, timeout=240)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:] + server["log"].read_text()[-2000:]
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    file, static = seen["paths"]
    assert file.startswith(str(venv)) and static.startswith(str(venv)), seen  # the wheel, in the kernel too
    assert (seen["rows"], seen["cols"]) == ("2", "4")  # the toy model's 2 layers x 4 heads, drawn
    assert seen["kernel"] == [7, 2]
