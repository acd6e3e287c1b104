"""Hatch build hook: a wheel or sdist always carries the front-end bundles.

Every ``js/<entry>.ts`` becomes ``src/lenswidget/static/<entry>.js`` (plus ``lenswidget.css``).
When a bundle is missing or older than the sources, the hook runs ``npm ci`` (if
``node_modules`` is absent) and ``npm run build``, as anywidget's own template does; without npm
it stops the build with a message that says how to fix it. Editable installs skip it (``make js``
builds the bundles for a checkout). ``LENSWIDGET_SKIP_JS=1`` skips the build (the bundles must
then be there already).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def _missing_or_stale(root: Path) -> list[str]:
    static = root / "src" / "lenswidget" / "static"
    sources = [p for p in (root / "js").rglob("*") if p.suffix in (".ts", ".css") and "test" not in p.parts]
    newest = max((p.stat().st_mtime for p in sources), default=0.0)
    wanted = [static / f"{p.stem}.js" for p in sorted((root / "js").glob("*.ts"))] + [static / "lenswidget.css"]
    return [str(p.relative_to(root)) for p in wanted if not p.exists() or p.stat().st_mtime < newest]


class JSBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name == "wheel" and version == "editable":
            return
        root = Path(self.root)
        if not (root / "js").is_dir():  # building from an sdist: the bundles are inside it
            return
        todo = _missing_or_stale(root)
        if not todo:
            return
        if os.environ.get("LENSWIDGET_SKIP_JS") == "1":
            raise RuntimeError(f"LENSWIDGET_SKIP_JS=1 but these bundles are missing or stale: {todo}")
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(
                "lenswidget's front-end bundles are missing or stale "
                f"({', '.join(todo)}) and npm is not on PATH. Install Node >= 20 and npm, then build "
                "again (the build runs `npm ci && npm run build`), or run `make js` first."
            )
        if not (root / "node_modules").is_dir():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=root, check=True)
        subprocess.run([npm, "run", "build"], cwd=root, check=True)
        still = [p for p in _missing_or_stale(root) if not (root / p).exists()]
        if still:
            raise RuntimeError(f"`npm run build` did not produce {still}.")
