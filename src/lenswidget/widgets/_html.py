"""``widget.save_html(path)``: one self-contained HTML file of a view, for talks and papers.

The file holds the widget's bundle (base64, loaded as a module from a Blob URL), its CSS, its
current trait state (bytes traits base64-encoded, decoded to DataViews as the kernel would send
them) and a small stand-in for anywidget's model: ``get``/``set``/``on``/``off`` work locally, so
hover, focus, scrolling and everything drawn from the state works; a request (a click that needs
the model) is answered with an error that says so. No CDN, no server, no kernel: it opens from
``file://``. (``ipywidgets.embed`` would load the widget manager from unpkg.)
"""

from __future__ import annotations

import base64
import html
import json
import pathlib
from typing import Any

#: traits of ipywidgets / anywidget machinery that the view does not read
_SKIP = {"layout", "tabbable", "tooltip", "keys", "comm", "log"}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 16px; }}</style>
<style>{css}</style>
</head><body>
<div id="lw-static" data-saved-by="lenswidget"></div>
<script type="application/json" id="lw-state">{state}</script>
<script type="application/octet-stream" id="lw-esm">{esm}</script>
<script type="module">
const NEEDS_KERNEL = {needs};
const raw = JSON.parse(document.getElementById("lw-state").textContent);
const bytes = (b64) => {{
  const s = atob(b64);
  const u = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
  return u;
}};
const state = {{}};
for (const [k, v] of Object.entries(raw)) {{
  state[k] = v && typeof v === "object" && "__b64__" in v ? new DataView(bytes(v.__b64__).buffer) : v;
}}
const listeners = new Map();
const emit = (event, ...args) => {{ for (const cb of [...(listeners.get(event) || [])]) cb(...args); }};
const model = {{
  get: (k) => state[k],
  set: (k, v) => {{ state[k] = v; emit("change:" + k, v); }},
  save_changes() {{}},
  on(event, cb) {{ if (!listeners.has(event)) listeners.set(event, new Set()); listeners.get(event).add(cb); }},
  off(event, cb) {{
    if (!event) return listeners.clear();
    if (!cb) return void listeners.delete(event);
    listeners.get(event)?.delete(cb);
  }},
  send(msg) {{
    if (!msg || msg.type !== "request") return;
    const message = `"${{msg.kind}}" ${{NEEDS_KERNEL}}`;
    setTimeout(() => emit("msg:custom", {{ type: "reply", id: msg.id, ok: false, error: {{ kind: "needs-kernel", message }} }}, []), 0);
  }},
}};
const code = new TextDecoder().decode(bytes(document.getElementById("lw-esm").textContent.trim()));
const url = URL.createObjectURL(new Blob([code], {{ type: "text/javascript" }}));
const mod = await import(url);
URL.revokeObjectURL(url);
(mod.default || mod).render({{ model, el: document.getElementById("lw-static") }});
document.getElementById("lw-static").dataset.ready = "1";
</script>
</body></html>
"""

NEEDS_KERNEL = "needs the kernel: this is a saved page (widget.save_html). Run the notebook to use it."


def _state(widget: Any) -> dict:
    out = {}
    for name in widget.trait_names(sync=True):
        if name.startswith("_") or name in _SKIP:
            continue
        value = getattr(widget, name)
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = {"__b64__": base64.b64encode(bytes(value)).decode("ascii")}
        out[name] = value
    return out


def page_html(widget: Any, title: str | None = None) -> str:
    """The self-contained HTML page of ``widget``'s current view."""
    esm = widget._esm
    esm = esm.read_text() if isinstance(esm, pathlib.Path) else str(esm)
    css = widget._css
    css = css.read_text() if isinstance(css, pathlib.Path) else str(css or "")
    state = json.dumps(_state(widget), default=str).replace("<", "\\u003c")
    return _PAGE.format(
        title=html.escape(title or f"lenswidget {type(widget).__name__}"),
        css=css.replace("</", "<\\/"),
        state=state,
        esm=base64.b64encode(esm.encode()).decode("ascii"),
        needs=json.dumps(NEEDS_KERNEL),
    )


def save_html(widget: Any, path: str | pathlib.Path, title: str | None = None) -> pathlib.Path:
    """Write :func:`page_html` to ``path``; returns the path."""
    path = pathlib.Path(path)
    path.write_text(page_html(widget, title), encoding="utf-8")
    return path
