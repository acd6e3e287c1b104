"""The computations behind :class:`~lenswidget.widgets.circuit.CircuitGraph`, one input at a time.

A :class:`CircuitWork` holds one prompt pair's edge scores and faithfulness curve and answers the
view's questions about them (the circuit of the top ``n`` edges, one edge patched, one node) with
:mod:`lenswidget.analysis.circuits`; exact circuit metrics and edge patches are evaluated on the
clean/corrupted runs the scoring recorded (``EdgeScores._runs``), not recorded again per click. The widget swaps a whole ``CircuitWork`` in only
once everything for the new input or method is computed, so a failure or a cancel leaves the
one shown intact.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch

from ..analysis import _edge_patching, circuits
from ..analysis.dla import direct_logit_attribution
from ..analysis.promoted import promoted_tokens
from ..encode import encode_tensor
from ..errors import Cancelled, InputError
if TYPE_CHECKING:  # widgets check the lens through base.LensLike: no import circle with session.py
    from ..session import Lens
from ._circuit_data import Edge, parse_edge, prune

ProgressFn = Callable[[int, int, str], Any]


def check_method(method: Any, methods: Sequence[str]) -> str:
    if method not in methods:
        raise InputError(f"Unknown scoring method {method!r:.40}: choose one of {list(methods)}.")
    return method


def check_steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"EAP-IG needs at least 1 interpolation step, got steps={steps!r:.40}.")
    return steps


@contextlib.contextmanager
def cancellable(model: Any, cancel: Callable[[], bool]) -> Iterator[None]:
    """Raise :class:`Cancelled` from the next transformer block that runs once ``cancel()`` is
    true (a forward pre-hook on each block; removed on exit), so a long scoring stops promptly."""

    def hook(_module: Any, _args: Any) -> None:
        if cancel():
            raise Cancelled("Scoring cancelled: the previous scores are kept.")

    handles = [block.register_forward_pre_hook(hook) for block in model.blocks]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _floats(x: Any) -> list[float]:
    if isinstance(x, torch.Tensor):
        return [float(v) for v in x.detach().reshape(-1).cpu().tolist()]
    return [float(v) for v in x]


class CircuitWork:
    """Edge scores, the faithfulness curve and the answers the view asks for, for one input."""

    def __init__(self, lens: Lens, clean: torch.Tensor, corrupted: torch.Tensor,
                 answer: int, wrong: int, metric: Any) -> None:
        self.lens, self.model = lens, lens.model
        self.clean, self.corrupted = clean, corrupted
        self.answer, self.wrong, self.metric = answer, wrong, metric
        self.graph = circuits.component_graph(self.model)
        self.labels: list[str] = list(self.graph.edges)
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.nodes: list[str] = list(self.graph.nodes)
        cfg = self.model.cfg
        self._heads = int(cfg.n_heads)
        self._kv = int(getattr(cfg, "n_key_value_heads", None) or cfg.n_heads)
        with torch.inference_mode():
            self.m_full = float(metric(lens.run(clean).logits))
            self.m_empty = float(metric(lens.run(corrupted).logits))
        if abs(self.m_full - self.m_empty) < 1e-6:
            raise InputError(
                f"The metric is the same on both prompts ({self.m_full:.4g}): there is nothing to attribute "
                "and faithfulness has no range. Choose a corrupted prompt that changes the answer."
            )
        self.method, self.steps = "", 0
        self.scores: Any = None
        self.curve: Any = None
        self._order: torch.Tensor | None = None
        self._metrics: dict[tuple, float] = {}
        self._patches: dict[str, float] = {}  # one edge patched: the same whatever the method
        self._dla: Any = None

    @property
    def n_edges(self) -> int:
        return len(self.labels)

    # ------------------------------------------------------------------ scoring
    def score(self, method: str, steps: int, progress: ProgressFn | None, cancel: Callable[[], bool]) -> None:
        """Score every edge and compute the faithfulness curve (stages reported to ``progress``)."""
        report = progress or (lambda *_: None)
        with cancellable(self.model, cancel):
            report(0, 3, f"scoring {self.n_edges} edges ({method}{f', {steps} steps' if method == 'eap-ig' else ''})")
            scores = circuits.edge_attribution(self.model, self.clean, self.corrupted, self.metric,
                                               method=method, steps=steps)
            report(1, 3, "faithfulness curve (exact)")
            curve = circuits.faithfulness_curve(self.model, self.clean, self.corrupted, self.metric, scores)
            report(2, 3, "circuit")
        self.method, self.steps, self.scores, self.curve = method, steps, scores, curve
        self._order = scores.order().cpu()  # the order faithfulness_curve takes its top edges in
        self._metrics = {}
        if self.n_edges:  # the strongest edge's patch, the likeliest first click (and a warm-up of
            self._patch_value(self.labels[int(self._order[0])])  # the one-row patched run: 4x faster after)

    def rescored(self, method: str, steps: int, progress: ProgressFn | None, cancel: Callable[[], bool]) -> "CircuitWork":
        """A copy of this input scored with ``method``/``steps`` (this one is left as it is)."""
        fresh = object.__new__(CircuitWork)
        fresh.__dict__.update(self.__dict__)
        fresh._metrics, fresh._dla = {}, self._dla
        fresh.score(method, steps, progress, cancel)
        return fresh

    # ------------------------------------------------------------------ lookups
    def parse(self, label: str) -> Edge:
        return parse_edge(label, self._heads, self._kv)

    def check_edge(self, label: Any) -> str:
        if not isinstance(label, str) or label not in self.index:
            example = self.labels[min(len(self.labels) - 1, 1)]
            raise InputError(
                f"Unknown edge {label!r:.80}: edges are labelled '{{up}}->{{down}}', e.g. {example!r} "
                f"(this model has {self.n_edges}).",
                details={"edge": repr(label)},
            )
        return label

    def check_node(self, label: Any) -> str:
        if not isinstance(label, str) or label not in self.nodes:
            raise InputError(
                f"Unknown node {label!r:.80}: nodes are 'embed', 'L{{layer}}H{{head}}', 'mlp{{layer}}' "
                f"(models with MLPs) and 'logits'; this model has layers 0..{self.lens.n_layers - 1} "
                f"and heads 0..{self._heads - 1}.",
                details={"node": repr(label)},
            )
        return label

    def score_of(self, label: str) -> float:
        return float(self.scores.scores[self.index[label]])

    def top_labels(self, n: int) -> list[str]:
        return [self.labels[i] for i in self._order[:n].tolist()]

    def node_score_map(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.scores.node_scores().items()}

    # ------------------------------------------------------------------ what the view holds
    def top_entry(self, k: int) -> dict:
        """The top ``k`` edges by |score| (the most the view can draw): labels and float32 scores."""
        idx = self._order[:k]
        data, _ = encode_tensor(self.scores.scores.detach().cpu()[idx], "f32")
        s = self.scores.scores.detach()
        return {"labels": [self.labels[i] for i in idx.tolist()], "scores": data, "n": int(idx.numel()),
                "n_edges": self.n_edges, "max_abs": float(s.abs().max()) if s.numel() else 0.0,
                "method": self.method, "steps": self.steps}

    def node_entry(self) -> dict:
        m = self.node_score_map()
        labels = [n for n in self.nodes if n in m]
        data, _ = encode_tensor(torch.tensor([m[n] for n in labels]), "f32")
        return {"labels": labels, "scores": data}

    def curve_entry(self) -> dict:
        c = self.curve
        return {"fractions": _floats(c.fractions), "sizes": [int(v) for v in _floats(c.sizes)],
                "faithfulness": _floats(c.faithfulness), "random": _floats(c.random),
                "m_full": float(c.m_full), "m_empty": float(c.m_empty),
                "auc": float(c.auc), "auc_random": float(c.auc_random)}

    # ------------------------------------------------------------------ exact answers
    def _evaluate(self, labels: list[str], mode: str) -> float:
        """``circuits.circuit_metric`` (``mode="circuit"``) or ``circuits.patch_edge`` (``"patch"``)
        of ``labels``, evaluated on the clean and corrupted runs recorded while scoring (those
        functions record both runs again on every call: two extra forward passes a click)."""
        runs = getattr(self.scores, "_runs", None)
        if runs is None or not hasattr(_edge_patching, "evaluate"):  # no recorded runs: the public functions
            fn = circuits.circuit_metric if mode == "circuit" else circuits.patch_edge
            return float(fn(self.model, self.clean, self.corrupted, self.metric, labels if mode == "circuit" else labels[0]))
        mask = runs.graph.edge_mask(labels)
        return float(_edge_patching.evaluate(runs, mask[None], mode, self.metric)[0])

    def _patch_value(self, label: str) -> float:
        if label not in self._patches:
            self._patches[label] = self._evaluate([label], "patch")
        return self._patches[label]

    def _metric_of(self, labels: list[str]) -> float:
        key = tuple(sorted(labels))
        if key not in self._metrics:
            self._metrics[key] = self._evaluate(labels, "circuit")
        return self._metrics[key]

    def _faith(self, m: float) -> float:
        return (m - self.m_empty) / (self.m_full - self.m_empty)

    def circuit(self, size: int, removed: Sequence[str], max_drawn: int | None = None) -> dict:
        """The circuit of the top ``size`` edges without the nodes ``removed``: the edges and nodes
        drawn (pruned to those with a path to logits) and its exact metric and faithfulness."""
        labels = self.top_labels(size)
        parsed = [self.parse(l) for l in labels]
        gone = set(removed)
        kept = [e.label for e in parsed if e.up not in gone and not all(t in gone for t in e.targets)]
        drawn, nodes = prune(parsed[: max_drawn or len(parsed)])
        m = self._metric_of(kept)
        out = {
            "size": size, "n_edges": self.n_edges, "fraction": size / self.n_edges,
            "edges": [e.label for e in drawn], "nodes": nodes, "pruned": len(parsed) - len(drawn),
            "truncated": max_drawn is not None and size > max_drawn,
            "removed": list(removed), "removed_edges": len(labels) - len(kept),
            "metric": m, "faithfulness": self._faith(m),
            "clean_value": self.m_full, "corrupted_value": self.m_empty,
        }
        if gone:
            full = self._metric_of(labels)
            out.update(metric_full=full, faithfulness_full=self._faith(full))
        return out

    def patch_edge(self, label: Any) -> dict:
        label = self.check_edge(label)
        e = self.parse(label)
        value = self._patch_value(label)
        rank = int((self._order == self.index[label]).nonzero()[0, 0]) + 1
        return {"edge": label, "up": e.up, "down": e.down, "port": e.port, "targets": list(e.targets),
                "value": value, "effect": value - self.m_empty, "estimate": self.score_of(label),
                "normalized": self._faith(value), "rank": rank, "n_edges": self.n_edges,
                "clean_value": self.m_full, "corrupted_value": self.m_empty, "method": self.method}

    def node(self, label: Any) -> dict:
        label = self.check_node(label)
        scores = self.node_score_map()
        out: dict = {"label": label, "score": scores.get(label), "kind": _kind(label),
                     "clean_value": self.m_full, "corrupted_value": self.m_empty}
        if label == "logits":
            return out
        dla = self._dla_result()
        parts = ["embed", "pos_embed"] if label == "embed" else [label]
        out["dla"] = sum(dla.component(p) for p in parts if p in dla.labels)
        out["dla_quantity"] = "logit(answer) − logit(wrong), direct"
        p = promoted_tokens(self.model, self.clean, label, pos=-1, k=10)
        out["promoted"] = [{"token": t, "id": i, "value": v} for t, i, v in p.promoted]
        out["suppressed"] = [{"token": t, "id": i, "value": v} for t, i, v in p.suppressed]
        if p.attention is not None:
            layer, head = (int(x) for x in label[1:].split("H"))
            out["layer"], out["head"] = layer, head
            out["attention"] = {"tokens": self.lens.str_tokens(self.clean), "weights": _floats(p.attention), "pos": p.pos}
        return out

    def _dla_result(self) -> Any:
        if self._dla is None:
            with torch.inference_mode():
                self._dla = direct_logit_attribution(self.model, self.clean[0], self.answer, wrong=self.wrong,
                                                     cache=self.lens.run(self.clean).cache)
        return self._dla


def _kind(label: str) -> str:
    if label in ("embed", "logits"):
        return label
    return "mlp" if label.startswith("mlp") else "head"
