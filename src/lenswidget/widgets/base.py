"""The shared request machinery of every lenswidget widget.

A widget is thin: it declares traits, validates input, calls :mod:`lenswidget.analysis`, encodes
results and reports errors and progress. This module holds what all widgets share:

- the bundle lookup (a missing JS bundle is a clear message, never a broken import);
- :class:`Request`: a declared request kind with typed arguments, so junk from the front end is
  rejected before any handler runs;
- :class:`LensWidget`: the message handler (``{type: "request", id, kind, args}`` →
  ``{type: "reply", id, ok, result | error}``), error reporting to the view (``error`` trait) and to
  Python (logging), the busy flag, and background work with progress and cancellation.

See docs/protocol.md for the wire format.
"""

from __future__ import annotations

import logging
import pathlib
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

import anywidget
import traitlets

from ..errors import Cancelled, LensError, ProtocolError
if TYPE_CHECKING:  # the session builds widgets; widgets check a lens by its shape (LensLike)
    from ..session import Lens

log = logging.getLogger("lenswidget")

STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"
_MISSING = (
    "lenswidget's front-end bundle {name} is missing from {dir}. In a source checkout run "
    "`make js` (or `npm ci && npm run build`); installed wheels ship it."
)


def bundle(name: str) -> pathlib.Path | str:
    """The path of a built front-end file, or, when it is missing, a tiny ES module that shows
    how to build it (so ``import lenswidget`` never fails on a missing bundle)."""
    path = STATIC / name
    if path.exists():
        return path
    if name.endswith(".css"):
        return ""
    message = _MISSING.format(name=name, dir=STATIC)
    return (
        "export default { render({ el }) { const p = document.createElement('pre'); "
        f"p.textContent = {message!r}; el.appendChild(p); }} }};"
    )


def bundle_missing(name: str) -> str | None:
    """The message about a missing bundle, or None when it is there."""
    path = STATIC / name
    return None if path.exists() else _MISSING.format(name=name, dir=STATIC)


@runtime_checkable
class LensLike(Protocol):
    """What a widget needs of a lens (:class:`lenswidget.Lens` is one): checked by shape, so
    ``widgets`` need not import ``session`` (which builds widgets) at run time."""

    model: Any

    def tokenize(self, prompt: str, *, what: str = "prompt") -> Any: ...
    def str_tokens(self, tokens: Any) -> list[str]: ...
    def check_head(self, layer: Any, head: Any) -> tuple[int, int]: ...
    def run(self, tokens: Any) -> Any: ...
    def computation(self, name: str, *, wait: bool = True) -> Any: ...
    def observe_selection(self, callback: Any) -> Any: ...


@dataclass(frozen=True)
class Request:
    """A request kind the front end may send.

    ``args`` maps each argument name to its type (``int``, ``float``, ``str``, ``bool``,
    ``list``, ``dict``) or to ``(type, default)`` for an optional argument. ``background`` requests
    run in a thread, stream progress and can be cancelled. ``exclusive=False`` requests do not
    take the session (they must not touch the model: e.g. cancelling).
    """

    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    background: bool = False
    exclusive: bool = True

    def parse(self, raw: Any) -> dict[str, Any]:
        """Checked arguments, or a :class:`ProtocolError` naming what is wrong."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ProtocolError(f"Request '{self.kind}': args must be an object, got {type(raw).__name__}.")
        unknown = sorted(set(raw) - set(self.args))
        if unknown:
            raise ProtocolError(f"Request '{self.kind}': unknown argument(s) {unknown}.")
        out: dict[str, Any] = {}
        for name, spec in self.args.items():
            typ, default, required = (spec[0], spec[1], False) if isinstance(spec, tuple) else (spec, None, True)
            if name not in raw:
                if required:
                    raise ProtocolError(f"Request '{self.kind}': missing argument '{name}'.")
                out[name] = default
                continue
            value = raw[name]
            if value is None and not required:
                out[name] = default
                continue
            if not _is_type(value, typ):
                raise ProtocolError(
                    f"Request '{self.kind}': argument '{name}' must be {typ.__name__}, got {value!r:.80}."
                )
            out[name] = float(value) if typ is float else value
        return out


def _is_type(value: Any, typ: type) -> bool:
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    return isinstance(value, typ)


class Progress:
    """Handed to background work: report progress and poll for cancellation."""

    def __init__(self, widget: "LensWidget", request_id: Any, kind: str):
        self._widget = widget
        self.id = request_id
        self.kind = kind
        self.cancelled = threading.Event()

    def __call__(self, done: int, total: int, message: str = "") -> None:
        self._widget._send_msg(
            {"type": "progress", "id": self.id, "done": int(done), "total": int(total), "message": message}
        )

    def cancel_requested(self) -> bool:
        return self.cancelled.is_set()


class LensWidget(anywidget.AnyWidget):
    """Base class of lenswidget widgets: one model session, request handling, errors, theme."""

    _css = bundle("lenswidget.css")

    #: the last failed request's ``{kind, message, details}``, or ``{}``
    error = traitlets.Dict({}).tag(sync=True)
    #: the kind of the request being computed, or ``""``
    busy = traitlets.Unicode("").tag(sync=True)
    #: ``"auto"`` follows the notebook's theme
    theme = traitlets.Enum(["auto", "light", "dark"], default_value="auto").tag(sync=True)

    #: request kinds this widget serves; subclasses extend it
    REQUESTS: dict[str, Request] = {}
    _BUNDLE: str = ""

    def __init__(self, lens: Lens, **kwargs: Any) -> None:
        if not isinstance(lens, LensLike):
            raise TypeError(f"{type(self).__name__} needs a lenswidget.Lens, got {type(lens).__name__}.")
        own = set(self.class_own_traits(sync=True)) | set(LensWidget.class_own_traits(sync=True))
        unknown = sorted(k for k in kwargs if k not in own)
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword argument(s) {unknown}.")
        self.lens = lens  # before the traits: their validators check against the model
        super().__init__(**kwargs)
        self._jobs: dict[Any, Progress] = {}
        self.on_msg(self._on_msg)
        missing = bundle_missing(self._BUNDLE) if self._BUNDLE else None
        if missing:
            warnings.warn(missing, RuntimeWarning, stacklevel=3)

    # ------------------------------------------------------------------ messages
    def _send_msg(self, content: dict, buffers: list | None = None) -> None:
        try:
            self.send(content, buffers)
        except Exception:  # pragma: no cover - no front end attached
            log.debug("could not send %s", content.get("type"), exc_info=True)

    def _reply(self, request_id: Any, result: Any = None, buffers: list | None = None) -> None:
        self._send_msg({"type": "reply", "id": request_id, "ok": True, "result": result}, buffers)

    def _reply_error(self, request_id: Any, err: LensError) -> None:
        self._send_msg({"type": "reply", "id": request_id, "ok": False, "error": err.to_json()})

    def _on_msg(self, _widget: Any, content: Any, buffers: list | None = None) -> None:
        """Entry point for every custom message from the front end. Never raises."""
        request_id = content.get("id") if isinstance(content, dict) else None
        if not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
            request_id = None
        try:
            self._dispatch(content, request_id)
        except LensError as err:
            self._fail(request_id, err)
        except Exception as exc:  # a bug: say so, keep the kernel and the widget alive
            log.error("lenswidget: request failed\n%s", traceback.format_exc())
            self._fail(request_id, LensError(f"Internal error: {type(exc).__name__}: {exc}"))

    def _dispatch(self, content: Any, request_id: Any) -> None:
        if not isinstance(content, dict):
            raise ProtocolError(f"Expected a message object, got {type(content).__name__}.")
        mtype = content.get("type")
        if mtype == "cancel":
            job = self._jobs.get(request_id)
            if job is not None:
                job.cancelled.set()
            return
        if mtype != "request":
            raise ProtocolError(f"Unknown message type {mtype!r}: expected 'request' or 'cancel'.")
        if request_id is None:
            raise ProtocolError("A request needs an 'id' (string or integer).")
        kind = content.get("kind")
        spec = self.REQUESTS.get(kind) if isinstance(kind, str) else None
        if spec is None:
            raise ProtocolError(
                f"Unknown request kind {kind!r:.60}: this widget serves {sorted(self.REQUESTS)}."
            )
        args = spec.parse(content.get("args"))
        handler: Callable[..., Any] = getattr(self, f"_req_{kind}")
        if spec.background:
            self._start_job(request_id, kind, handler, args)
            return
        if not spec.exclusive:
            out = handler(**args)
        else:
            with self.lens.computation(f"{type(self).__name__}.{kind}", wait=False):
                self.busy = kind
                try:
                    out = handler(**args)
                finally:
                    self.busy = ""
        result, bufs = out if isinstance(out, tuple) else (out, None)
        self.error = {}
        self._reply(request_id, result, bufs)

    def _fail(self, request_id: Any, err: LensError) -> None:
        if not isinstance(err, Cancelled):
            log.warning("lenswidget %s: %s", type(self).__name__, err.message)
        self.error = err.to_json()
        self._reply_error(request_id, err)

    # ------------------------------------------------------------------ background work
    def _start_job(self, request_id: Any, kind: str, handler: Callable[..., Any], args: dict) -> None:
        progress = Progress(self, request_id, kind)
        lens_name = f"{type(self).__name__}.{kind}"
        # take the session now so a second click is refused at once, not queued
        ctx = self.lens.computation(lens_name, wait=False)
        ctx.__enter__()
        self._jobs[request_id] = progress
        self.busy = kind

        def work() -> None:
            try:
                out = handler(progress=progress, **args)
                result, bufs = out if isinstance(out, tuple) else (out, None)
                self.error = {}
                self._reply(request_id, result, bufs)
            except LensError as err:
                self._fail(request_id, err)
            except Exception as exc:
                log.error("lenswidget: background request failed\n%s", traceback.format_exc())
                self._fail(request_id, LensError(f"Internal error: {type(exc).__name__}: {exc}"))
            finally:
                self._jobs.pop(request_id, None)
                self.busy = ""
                ctx.__exit__(None, None, None)

        thread = threading.Thread(target=work, name=f"lenswidget-{kind}", daemon=True)
        self._last_thread = thread
        thread.start()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the last background request has finished (for scripts and tests)."""
        thread = getattr(self, "_last_thread", None)
        if thread is not None:
            thread.join(timeout)

    def _exclusive(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` holding the session (waiting for its turn): a public method's computation."""
        with self.lens.computation(f"{type(self).__name__}.{name}"):
            return fn()

    # ------------------------------------------------------------------ static export
    def save_html(self, path: Any, title: str | None = None) -> pathlib.Path:
        """Save the current view as one self-contained HTML file (no CDN, no kernel): what is
        drawn, with hover and focus; actions that need the model say so. Returns the path."""
        from ._html import save_html

        return save_html(self, path, title)

    # ------------------------------------------------------------------ python-side errors
    def _python_call(self, fn: Callable[[], Any]) -> Any:
        """Run a public method's body: on a :class:`LensError`, show it in the view, then raise."""
        try:
            out = fn()
        except LensError as err:
            self.error = err.to_json()
            raise
        self.error = {}
        return out
