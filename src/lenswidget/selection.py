"""The selection a :class:`~lenswidget.Lens` shares between its widgets.

One component picked in any view (a patching cell, a top-components row, a direct-logit-attribution
contributor, a circuit node, or ``lens.select("L9H9")`` from Python) becomes the lens's
:class:`Selection`; widgets that observe the lens (the attention grid) follow it. No widget imports
another: publishers call ``lens.select``, observers register with ``lens.observe_selection``.

Labels are the ones the views already use: ``"L{l}H{h}"`` (a head), ``"L{l}KV{g}"`` (a key/value
group of a grouped-query model: the heads that share it), ``"mlp{l}"``, ``"attn{l}"`` (a layer's
attention output), ``"embed"`` and ``"logits"``.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from .analysis.ablation import check_head
from .errors import InputError, LensError

log = logging.getLogger("lenswidget")

_LABEL = re.compile(r"L(\d+)H(\d+)|L(\d+)KV(\d+)|(mlp|attn)(\d+)|(embed|logits)")


@dataclass(frozen=True)
class Selection:
    """One selected component and the prompt it was picked on.

    Attributes:
        label: ``"L9H9"``, ``"L3KV1"``, ``"mlp3"``, ``"attn3"``, ``"embed"`` or ``"logits"``.
        kind: ``"head"``, ``"kv_group"``, ``"mlp"``, ``"attn"``, ``"embed"`` or ``"logits"``.
        layer: the layer, or None for ``embed`` / ``logits``.
        heads: the query heads of ``layer`` this names (one for a head, the group for
            ``L{l}KV{g}``, ``()`` otherwise).
        prompt: the prompt it was picked on, or None (the observer keeps its own prompt).
        source: who picked it: the publishing widget's class name, or ``"python"``.
    """

    label: str
    kind: str
    layer: int | None
    heads: tuple[int, ...]
    prompt: str | None = None
    source: str = "python"

    @property
    def head(self) -> tuple[int, int] | None:
        """``(layer, head)`` of the first head this names, or None (an MLP, embed, logits...)."""
        if not self.heads or self.layer is None:
            return None
        return self.layer, self.heads[0]


def parse_selection(model: Any, label: Any, prompt: str | None = None, source: str = "python") -> Selection:
    """A :class:`Selection` of ``label`` on ``model``, or an :class:`InputError` that says why
    (an unknown name, a layer or head out of range, an MLP in an attention-only model).

    ``label`` may also be a ``(layer, head)`` pair."""
    cfg = model.cfg
    n_layers = int(cfg.n_layers)
    if isinstance(label, (tuple, list)) and len(label) == 2:
        layer, head = check_head(model, label[0], label[1])
        return Selection(f"L{layer}H{head}", "head", layer, (head,), prompt, source)
    m = _LABEL.fullmatch(label) if isinstance(label, str) else None
    if m is None:
        raise InputError(
            f"Cannot select {label!r}: name a head 'L{{layer}}H{{head}}', a key/value group "
            "'L{layer}KV{group}', 'mlp{layer}', 'attn{layer}', 'embed' or 'logits'.",
            details={"label": repr(label)},
        )
    if m.group(1) is not None:
        layer, head = check_head(model, int(m.group(1)), int(m.group(2)))
        return Selection(label, "head", layer, (head,), prompt, source)
    if m.group(3) is not None:
        layer, group = int(m.group(3)), int(m.group(4))
        _check_layer(layer, n_layers)
        n_heads = int(cfg.n_heads)
        n_kv = getattr(cfg, "n_key_value_heads", None)
        if n_kv is None or int(n_kv) == n_heads:
            raise InputError(
                f"Cannot select {label!r}: this model has no grouped-query attention "
                f"(its key/value heads are its {n_heads} heads: select 'L{layer}H{group}').",
            )
        n_kv = int(n_kv)
        if not 0 <= group < n_kv:
            raise InputError(f"Key/value group {group} is out of range: each layer has groups 0..{n_kv - 1}.")
        per = n_heads // n_kv
        return Selection(label, "kv_group", layer, tuple(range(group * per, (group + 1) * per)), prompt, source)
    if m.group(5) is not None:
        kind, layer = m.group(5), int(m.group(6))
        _check_layer(layer, n_layers)
        hook = f"blocks.{layer}.hook_{kind}_out"
        if hook not in getattr(model, "hook_dict", {}):
            raise InputError(
                f"Cannot select {label!r}: this model has no {hook} (no {kind.upper()} in layer {layer}).",
                details={"label": label, "hook": hook},
            )
        return Selection(label, kind, layer, (), prompt, source)
    return Selection(label, label, None, (), prompt, source)


def _check_layer(layer: int, n_layers: int) -> None:
    if not 0 <= layer < n_layers:
        raise InputError(f"Layer {layer} is out of range: the model has layers 0..{n_layers - 1}.")


class SelectionHub:
    """The lens's selection and its observers.

    Observers are called with the new :class:`Selection` (or None when cleared). A bound method
    is held weakly, so a widget that is garbage-collected stops observing. A selection published
    while the publishing thread holds the lens's computation (a widget click handler) is delivered
    when that computation ends, so observers may run the model themselves.
    """

    def __init__(self) -> None:
        self.current: Selection | None = None
        self._observers: list[tuple[Callable[[], Callable | None], int | None]] = []
        self._deferred: set[int] = set()  # thread ids holding the computation with a pending notice
        self._later: dict[int, list[Callable[[], Any]]] = {}  # thread id -> calls for its computation's end
        self._mutex = threading.Lock()

    def observe(self, callback: Callable[[Selection | None], Any]) -> Callable[[], None]:
        """Call ``callback(selection)`` on every change; returns a function that stops it."""
        owner = getattr(callback, "__self__", None)
        ref: Callable[[], Callable | None]
        if owner is not None and hasattr(callback, "__func__"):  # a bound Python method
            ref = weakref.WeakMethod(callback)  # type: ignore[arg-type]
        else:
            owner = None
            ref = lambda cb=callback: cb  # noqa: E731 - a strong reference for plain functions
        entry = (ref, None if owner is None else id(owner))
        with self._mutex:
            self._observers.append(entry)

        def stop() -> None:
            with self._mutex:
                if entry in self._observers:
                    self._observers.remove(entry)

        return stop

    def set(self, selection: Selection | None, *, defer: bool, publisher: Any = None) -> None:
        """Make ``selection`` current; notify now, or when the caller's computation ends."""
        self.current = selection
        self._publisher = None if publisher is None else id(publisher)
        if defer:
            self._deferred.add(threading.get_ident())
        else:
            self.notify()

    def later(self, fn: Callable[[], Any], *, defer: bool) -> None:
        """Call ``fn()`` now, or with ``defer`` when this thread's computation ends (see
        :meth:`flush`); an error is logged, not raised."""
        if defer:
            self._later.setdefault(threading.get_ident(), []).append(fn)
        else:
            _guarded(fn)

    def flush(self) -> None:
        """Deliver a notice deferred by this thread, then its :meth:`later` calls (called when
        its computation ends)."""
        ident = threading.get_ident()
        if ident in self._deferred:
            self._deferred.discard(ident)
            self.notify()
        for fn in self._later.pop(ident, []):
            _guarded(fn)

    def notify(self) -> None:
        selection, skip = self.current, getattr(self, "_publisher", None)
        with self._mutex:
            observers = list(self._observers)
        for ref, owner in observers:
            callback = ref()
            if callback is None:
                with self._mutex:
                    if (ref, owner) in self._observers:
                        self._observers.remove((ref, owner))
                continue
            if skip is not None and owner == skip:
                continue  # a widget does not follow its own publication
            _guarded(lambda cb=callback: cb(selection))


def _guarded(fn: Callable[[], Any]) -> None:
    """Call ``fn``; an error is logged (the observer shows its own), never raised to the publisher."""
    try:
        fn()
    except LensError as err:
        log.warning("lenswidget selection observer: %s", err.message)
    except Exception:
        log.exception("lenswidget: a selection observer failed")
