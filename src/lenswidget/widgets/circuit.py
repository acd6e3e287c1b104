"""`CircuitGraph`: edge attribution over the component graph, drawn as a clickable circuit.

Mirrors ``js/circuit.ts``; traits and requests are in docs/protocol.md. The scores
(:func:`~lenswidget.analysis.edge_attribution`, EAP or EAP-IG) and the exact faithfulness curve
are computed when the inputs are set, and again (in a background thread, with progress and
Cancel) when the view asks for another method. The view draws the top ``size`` edges at once
from the scores it holds, then shows that circuit's exact faithfulness (a rerun). A click on an
edge runs the exact patch of that one edge; a click on a node shows what it promotes, its direct
logit attribution and, for a head, its attention from the answer position.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable

import torch
import traitlets

from ..analysis.metrics import logit_diff_metric
from ..errors import InputError
if TYPE_CHECKING:  # widgets check the lens through base.LensLike: no import circle with session.py
    from ..session import Lens
from ._pairs import PairTraits
from ._circuit_work import CircuitWork, check_method, check_steps
from ._circuit_overlay import WeightsOverlay
from .base import LensWidget, Progress, Request, bundle

METHODS = ("eap", "eap-ig", "exact")


class CircuitGraph(PairTraits, LensWidget):
    """The circuit of a clean/corrupted prompt pair, as a layered graph.

    Made by ``lens.circuit(clean, corrupted, answer, wrong)``. The metric is the logit difference
    ``logit(answer) - logit(wrong)`` at the last position; scores are denoising (a positive edge
    carries the clean behaviour). Every click is a method here: :meth:`set_size`,
    :meth:`patch_edge`, :meth:`node`, :meth:`remove_node`, :meth:`restore`, :meth:`faithfulness`,
    :meth:`score` (method / steps), :meth:`set_inputs`, :meth:`weights_overlay` (composition scores
    from the weights beside the data scores); each returns the dict the view draws.

    Args:
        method: ``"eap-ig"`` (default), ``"eap"`` or ``"exact"`` (every edge patched; small models).
        steps: EAP-IG interpolation steps (>= 1).
        size: edges in the circuit shown (default ``min(50, n_edges)``).
        max_edges: how many top-scoring edges the view holds (the most it can draw).
    """

    _BUNDLE = "circuit.js"
    _esm = bundle("circuit.js")

    n_kv_heads = traitlets.Int(0).tag(sync=True)
    has_mlp = traitlets.Bool(True).tag(sync=True)
    n_edges = traitlets.Int(0).tag(sync=True)
    method = traitlets.Unicode("eap-ig").tag(sync=True)
    steps = traitlets.Int(5).tag(sync=True)
    clean_value = traitlets.Float(0.0).tag(sync=True)
    corrupted_value = traitlets.Float(0.0).tag(sync=True)
    edges = traitlets.Dict({}).tag(sync=True)
    node_scores = traitlets.Dict({}).tag(sync=True)
    curve = traitlets.Dict({}).tag(sync=True)
    size = traitlets.Int(0).tag(sync=True)
    current = traitlets.Dict({}).tag(sync=True)
    selected = traitlets.Dict({}).tag(sync=True)
    edge_result = traitlets.Dict({}).tag(sync=True)
    node_result = traitlets.Dict({}).tag(sync=True)
    removed = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    score_state = traitlets.Enum(["idle", "running", "done"], default_value="idle").tag(sync=True)
    #: {} (off) or the composition scores of the head -> head edges the view holds (docs/protocol.md)
    overlay = traitlets.Dict({}).tag(sync=True)

    REQUESTS = {
        "set_inputs": Request("set_inputs", {"clean": str, "corrupted": str, "answer": str, "wrong": str}),
        "score": Request("score", {"method": str, "steps": (int, None)}, background=True),
        "set_size": Request("set_size", {"size": int}),
        "patch_edge": Request("patch_edge", {"edge": str}),
        "node": Request("node", {"label": str}),
        "remove_node": Request("remove_node", {"label": str}),
        "restore": Request("restore", {}),
        "cancel_score": Request("cancel_score", {}, exclusive=False),
        "weights_overlay": Request("weights_overlay", {"on": bool}, background=True),
    }

    def __init__(
        self,
        lens: Lens,
        clean: str,
        corrupted: str,
        answer: str,
        wrong: str,
        *,
        method: str = "eap-ig",
        steps: int = 5,
        size: int | None = None,
        max_edges: int = 500,
        **kwargs: Any,
    ) -> None:
        super().__init__(lens, **kwargs)
        if isinstance(max_edges, bool) or not isinstance(max_edges, int) or max_edges < 1:
            raise InputError(f"max_edges must be a positive integer, got {max_edges!r}.")
        self._max_edges = max_edges
        self._cancel = threading.Event()
        self.work: CircuitWork | None = None
        cfg = lens.cfg
        self.n_layers, self.n_heads = lens.n_layers, lens.n_heads
        self.n_kv_heads = int(getattr(cfg, "n_key_value_heads", None) or cfg.n_heads)
        self.has_mlp = not bool(getattr(cfg, "attn_only", False))
        self._method, self._steps = check_method(method, METHODS), check_steps(steps)
        self._want_size = size
        self._overlay = WeightsOverlay(self.n_heads, self.n_kv_heads)
        self.set_inputs(clean, corrupted, answer, wrong)

    # ------------------------------------------------------------------ public API
    @property
    def edge_scores(self) -> Any:
        """The :class:`~lenswidget.analysis.EdgeScores` shown (all edges, on the model's device)."""
        return self.work.scores if self.work else None

    @property
    def faithfulness_result(self) -> Any:
        """The :class:`~lenswidget.analysis.FaithfulnessCurve` shown."""
        return self.work.curve if self.work else None

    def set_inputs(self, clean: str, corrupted: str, answer: str, wrong: str) -> dict:
        """Set the prompt pair and answers; score every edge and compute the exact faithfulness
        curve. Returns the circuit drawn (as :meth:`set_size`). Raises :class:`InputError` (shown in
        the view too) for prompts of different token counts, identical prompts, answers that are
        not one token, or a pair on which the metric does not change."""
        return self._python_call(
            lambda: self._exclusive("set_inputs", lambda: self._set_inputs(clean, corrupted, answer, wrong))
        )

    def score(self, method: str | None = None, steps: int | None = None,
              *, progress: Callable[[int, int, str], Any] | None = None) -> Any:
        """Rescore every edge with ``method`` (``"eap"``, ``"eap-ig"``, ``"exact"``) and ``steps``,
        recompute the faithfulness curve and redraw; returns the new ``EdgeScores``. Blocking;
        :meth:`cancel` from another thread stops it and keeps the old scores."""

        def body() -> Any:
            self._cancel.clear()
            self._score(method, steps, progress, self._cancel.is_set, cancellable=False)
            return self.edge_scores

        return self._python_call(lambda: self._exclusive("score", body))

    def set_size(self, size: int | None = None, *, percent: float | None = None) -> dict:
        """Show the circuit of the top ``size`` edges (or ``percent`` % of all edges) and compute
        its exact faithfulness. Returns what the view draws: ``{size, n_edges, edges (drawn),
        nodes, pruned, metric, faithfulness, ...}``. Clears removed nodes."""
        return self._python_call(lambda: self._exclusive("set_size", lambda: self._set_size(size, percent)))

    def patch_edge(self, edge: str) -> dict:
        """Patch exactly one edge (its upstream node's clean output into the corrupted run, for
        that downstream input only). Returns ``{edge, value (metric after the patch), effect
        (value - corrupted metric), estimate (the edge's score), ...}``, what the view draws."""
        return self._python_call(lambda: self._exclusive("patch_edge", lambda: self._patch_edge(edge)))

    def node(self, label: str) -> dict:
        """What node ``label`` does on the clean prompt at the answer position: the tokens its
        output promotes and suppresses, its direct logit attribution to answer − wrong, and for a
        head its attention from that position. Publishes the selection to the lens."""
        return self._python_call(lambda: self._exclusive("node", lambda: self._node(label)))

    def remove_node(self, label: str) -> dict:
        """Remove node ``label`` (every edge into and out of it) from the circuit shown; returns
        the circuit's exact metric and faithfulness without it (removals accumulate)."""
        return self._python_call(lambda: self._exclusive("remove_node", lambda: self._remove_node(label)))

    def restore(self) -> dict:
        """Put removed nodes back; returns the circuit drawn (as :meth:`set_size`)."""
        return self._python_call(lambda: self._exclusive("restore", lambda: self._set_size(self.size, None)))

    def faithfulness(self) -> dict:
        """The faithfulness curve drawn beside the graph: ``{fractions, sizes, faithfulness,
        random, auc, auc_random, m_full, m_empty, current: {size, fraction, faithfulness}}``."""
        return dict(self.curve, current=_point(self.current))

    def weights_overlay(self, on: bool = True) -> dict:
        """Turn the weights overlay on (or off): every head -> head ``.q`` / ``.k`` / ``.v`` edge
        gets its Q-, K- or V-composition score from the weights (computed once per model, the
        first time) and its z-score against the random baseline, shaded beside its data score;
        the edge panel shows both. Returns what the view draws: ``{on, baseline_mean,
        baseline_std, edges: {label: {kind, score, z}}}`` for the head -> head edges drawn now
        (embed / MLP / logits edges have none)."""
        return self._python_call(lambda: self._exclusive("weights_overlay", lambda: self._weights_overlay(on)))

    def to_networkx(self) -> Any:
        """The circuit drawn as a ``networkx.DiGraph``: nodes with ``score`` (node score) and
        ``removed``; edges (up -> target node) with ``label``, ``score``, ``port`` (q/k/v or "")."""
        import networkx as nx

        work = self._need_work()
        graph = nx.DiGraph(size=self.size, method=self.method, faithfulness=self.current.get("faithfulness"))
        node_scores = work.node_score_map()
        for node in self.current.get("nodes", []):
            graph.add_node(node, score=node_scores.get(node, 0.0), removed=node in self.removed)
        for label in self.current.get("edges", []):
            e = work.parse(label)
            for target in e.targets:
                if target in graph:
                    graph.add_edge(e.up, target, label=label, score=work.score_of(label), port=e.port)
        return graph

    def cancel(self) -> None:
        """Stop a running rescoring; the previous scores stay."""
        self._cancel.set()
        for job in list(self._jobs.values()):
            job.cancelled.set()

    # ------------------------------------------------------------------ request handlers
    def _req_set_inputs(self, clean: str, corrupted: str, answer: str, wrong: str) -> dict:
        return self._set_inputs(clean, corrupted, answer, wrong)

    def _req_score(self, method: str, steps: int | None, progress: Progress) -> dict:
        self._score(method, steps, progress, progress.cancel_requested)
        return {"method": self.method, "steps": self.steps, "n_edges": self.n_edges}

    def _req_set_size(self, size: int) -> dict:
        return self._set_size(size, None)

    def _req_patch_edge(self, edge: str) -> dict:
        return self._patch_edge(edge)

    def _req_node(self, label: str) -> dict:
        return self._node(label)

    def _req_remove_node(self, label: str) -> dict:
        return self._remove_node(label)

    def _req_restore(self) -> dict:
        return self._set_size(self.size, None)

    def _req_weights_overlay(self, on: bool, progress: Progress) -> dict:
        return self._weights_overlay(on, progress)

    def _req_cancel_score(self) -> dict:
        running = self.score_state == "running"
        self.cancel()
        return {"cancelled": running}

    # ------------------------------------------------------------------ work
    def _need_work(self) -> CircuitWork:
        if self.work is None:  # pragma: no cover - set in __init__
            raise InputError("Set a clean and a corrupted prompt first.")
        return self.work

    def _set_inputs(self, clean: str, corrupted: str, answer: str, wrong: str) -> dict:
        lens = self.lens
        clean_t = lens.tokenize(clean, what="clean prompt")
        corrupted_t = lens.tokenize(corrupted, what="corrupted prompt")
        clean_s, corrupted_s = lens.str_tokens(clean_t), lens.str_tokens(corrupted_t)
        if clean_t.shape != corrupted_t.shape:
            raise InputError(
                f"The clean prompt is {clean_t.shape[1]} tokens and the corrupted prompt {corrupted_t.shape[1]}: "
                "edge patching needs the same number of tokens, position by position. Clean: "
                f"{clean_s!r}; corrupted: {corrupted_s!r}.",
                details={"clean_tokens": clean_s, "corrupted_tokens": corrupted_s},
            )
        if torch.equal(clean_t, corrupted_t):
            raise InputError(
                "The clean and corrupted prompts are identical: there is nothing to attribute (every edge "
                "carries the same value on both runs). Change a word in the corrupted prompt."
            )
        answer_id = lens.token_id(answer, what="answer")
        wrong_id = lens.token_id(wrong, what="wrong answer")
        if answer_id == wrong_id:
            raise InputError("The answer and the wrong answer are the same token: their logit difference is always 0.")
        metric = logit_diff_metric([answer_id], [wrong_id])
        work = CircuitWork(lens, clean_t, corrupted_t, answer_id, wrong_id, metric)
        work.score(self._method, self._steps, None, lambda: False)
        size = self._check_size(self._want_size if self.work is None and self._want_size is not None
                                else min(self.size or 50, work.n_edges), work.n_edges)
        current = work.circuit(size, (), self._max_edges)
        # everything computed: commit at once (a failure above leaves the old inputs in place)
        self.work = work
        with self.hold_sync():
            self.clean_prompt, self.corrupted_prompt = clean, corrupted
            self.answer, self.wrong = answer, wrong
            self.clean_tokens, self.corrupted_tokens = clean_s, corrupted_s
            self.clean_value, self.corrupted_value = work.m_full, work.m_empty
            self._show_scores(work)
            self._show_circuit(current, ())
            self.edge_result, self.node_result, self.selected = {}, {}, {}
        return current

    def _score(self, method: Any, steps: Any, progress: Callable[..., Any] | None,
               cancel: Callable[[], bool], *, cancellable: bool = True) -> None:
        work = self._need_work()
        method = check_method(self.method if method is None else method, METHODS)
        steps = check_steps(self.steps if steps is None else steps)
        self.score_state = "running"
        try:
            fresh = work.rescored(method, steps, progress, cancel)  # Cancelled leaves `work` as it was
            current = fresh.circuit(self.size, (), self._max_edges)
        finally:
            self.score_state = "idle"
        self.work, self._method, self._steps = fresh, method, steps
        with self.hold_sync():
            self._show_scores(fresh)
            self._show_circuit(current, ())
            self.edge_result, self.selected = {}, {}
            self.score_state = "done"

    def _show_scores(self, work: CircuitWork) -> None:
        self.method, self.steps = work.method, work.steps
        self.n_edges = work.n_edges
        self.edges = work.top_entry(self._max_edges)
        self.node_scores = work.node_entry()
        self.curve = work.curve_entry()
        if self._overlay.on:  # the top edges changed: their composition scores with them
            self.overlay = self._overlay.show(self.lens.model, work.top_labels(self._max_edges))

    def _weights_overlay(self, on: Any, progress: Progress | None = None) -> dict:
        if not isinstance(on, bool):
            raise InputError(f"The weights overlay is on (True) or off (False), got {on!r:.40}.")
        work = self._need_work()
        cancel = progress.cancel_requested if progress is not None else None
        labels = work.top_labels(self._max_edges)
        entry = self._overlay.show(self.lens.model, labels, progress, cancel) if on else self._overlay.hide()
        with self.hold_sync():
            self.overlay = entry
            if self.edge_result:
                self.edge_result = dict(self.edge_result, composition=self._overlay.edge(self.edge_result["edge"]))
        return self._overlay.drawn(self.current.get("edges", []))

    def _show_circuit(self, current: dict, removed: tuple[str, ...]) -> None:
        self.size = int(current["size"])
        self.removed = list(removed)
        self.current = current

    def _check_size(self, size: Any, n_edges: int) -> int:
        if isinstance(size, bool) or not isinstance(size, int):
            raise InputError(f"The circuit size is a number of edges (an integer), got {size!r:.60}.")
        if not 1 <= size <= n_edges:
            raise InputError(
                f"The circuit size must be between 1 and {n_edges} edges (this model's graph), got {size}.",
                details={"size": size, "n_edges": n_edges},
            )
        return size

    def _set_size(self, size: Any, percent: Any) -> dict:
        work = self._need_work()
        if percent is not None:
            if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 < percent <= 100:
                raise InputError(f"The circuit size in percent must be in (0, 100], got {percent!r:.60}.")
            size = max(1, round(work.n_edges * float(percent) / 100))
        size = self._check_size(self.size if size is None else size, work.n_edges)
        current = work.circuit(size, (), self._max_edges)
        with self.hold_sync():
            self._show_circuit(current, ())
        return current

    def _patch_edge(self, edge: Any) -> dict:
        work = self._need_work()
        result = work.patch_edge(edge)
        result["composition"] = self._overlay.edge(result["edge"])
        with self.hold_sync():
            self.selected = {"edge": result["edge"]}
            self.edge_result = result
        return result

    def _node(self, label: Any) -> dict:
        work = self._need_work()
        result = work.node(label)
        with self.hold_sync():
            self.selected = {"node": result["label"]}
            self.node_result = result
        select = getattr(self.lens, "select", None)
        if callable(select) and result["label"] != "logits":
            try:
                select(result["label"], self.clean_prompt, source=self)
            except Exception:  # noqa: BLE001 - the shared selection is a courtesy to other views
                pass
        return result

    def _remove_node(self, label: Any) -> dict:
        work = self._need_work()
        label = work.check_node(label)
        if label in ("embed", "logits"):
            raise InputError(f"'{label}' cannot be removed: every circuit starts at embed and ends at logits.")
        if label not in self.current.get("nodes", []):
            raise InputError(f"Node {label!r} is not in the circuit shown ({self.size} edges).",
                             details={"nodes": list(self.current.get("nodes", []))})
        removed = tuple(dict.fromkeys([*self.removed, label]))
        current = work.circuit(self.size, removed, self._max_edges)
        with self.hold_sync():
            self._show_circuit(current, removed)
        return current


def _point(current: dict) -> dict:
    return {k: current.get(k) for k in ("size", "fraction", "faithfulness", "metric")}


__all__ = ["CircuitGraph"]
