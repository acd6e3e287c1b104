"""`Workspace`: the patching heatmap, the attention grid and the logit-lens table of one lens
(and its circuit graph, where the lens has one) in one output, linked.

The views are linked through the lens, not through each other: a head or MLP picked in any of
them (a patching cell, a top-components row, a direct-logit-attribution contributor, a circuit
node) becomes ``lens.selection``, and the attention grid shows that head on the prompt where it
was picked. When the heatmap's prompts change (its *Apply* box, or :meth:`set_inputs`), the grid
and the table move to the first new clean prompt, and resample from its corrupted prompts.

The layout is an ``ipywidgets.VBox`` (JupyterLab, VS Code, Colab). Where a host draws anywidgets
but not ipywidgets containers (marimo), show the parts one by one (``ws.patching``,
``ws.attention``, ...): they stay linked, since the link is the lens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets

from ._pairs import parse_pairs
from .attention import AttentionGrid
from .base import LensLike
from .logit_lens import LogitLensTable
from .patching import PatchingHeatmap

if TYPE_CHECKING:  # widgets check the lens through base.LensLike: no import circle with session.py
    from ..session import Lens

TITLES = {
    "patching": "Activation patching: click a head cell (or a top-components row) to show that head below",
    "circuit": "Circuit: click a node to show it in the attention grid",
    "attention": "Attention heads of the first clean prompt: follows the selection",
    "logit_lens": "Logit lens of the first clean prompt: click a contributor to show it in the attention grid",
}


class Workspace(ipywidgets.VBox):
    """One output with the views of one lens, linked by ``lens.selection``.

    Made by ``lens.workspace(clean, corrupted, answer, wrong)`` (the arguments of
    :meth:`Lens.patching <lenswidget.Lens.patching>`: one prompt pair, or lists of them). Its
    parts are public: :attr:`patching` (:class:`PatchingHeatmap`), :attr:`attention`
    (:class:`AttentionGrid` on the first clean prompt, resample ablation from the corrupted
    prompts by default), :attr:`logit_lens` (:class:`LogitLensTable` on the first clean prompt,
    target the first answer), :attr:`circuit` (the lens's circuit graph, or None).

    Args:
        sites: the patching sites shown (default: the heatmap's).
        sweep: start the exact patching sweep in the background once everything is shown.
        circuit: include the circuit graph (default: when the lens can make one). It scores
            every edge when built, which takes a while on a large model.
    """

    def __init__(
        self,
        lens: Lens,
        clean: str | list[str],
        corrupted: str | list[str],
        answer: str | list[str],
        wrong: str | list[str],
        *,
        sites: list[str] | None = None,
        sweep: bool = False,
        circuit: bool | None = None,
    ) -> None:
        if not isinstance(lens, LensLike):
            raise TypeError(f"Workspace needs a lenswidget.Lens, got {type(lens).__name__}.")
        self.lens = lens
        pairs = parse_pairs(lens, clean, corrupted, answer, wrong)  # says which pair is wrong, if one is
        self.attention: AttentionGrid = lens.attention(
            pairs.clean[0], ablation_mode="resample", resample_prompts=list(pairs.corrupted)
        )
        self.logit_lens: LogitLensTable = lens.logit_lens(
            pairs.clean[0], target=pairs.answers[0], ablation_mode="resample",
            resample_prompts=[pairs.corrupted[0]],
        )
        first = {"clean": pairs.clean[0], "corrupted": pairs.corrupted[0], "answer": pairs.answers[0], "wrong": pairs.wrongs[0]}
        self.circuit: Any = None
        if circuit is None:
            circuit = hasattr(lens, "circuit")
        if circuit:
            if not hasattr(lens, "circuit"):
                raise TypeError("This version of lenswidget has no circuit graph (Lens.circuit).")
            self.circuit = lens.circuit(first["clean"], first["corrupted"], first["answer"], first["wrong"])
        # the heatmap last: with ``sweep`` its background sweep holds the model from here on
        self.patching: PatchingHeatmap = lens.patching(clean, corrupted, answer, wrong, sites=sites, sweep=sweep)
        parts: list[tuple[str, Any]] = [("patching", self.patching)]
        if self.circuit is not None:
            parts.append(("circuit", self.circuit))
        parts += [("attention", self.attention), ("logit_lens", self.logit_lens)]
        children = []
        for name, widget in parts:
            children += [ipywidgets.Label(TITLES[name]), widget]
        super().__init__(children=children, layout=ipywidgets.Layout(width="100%"))
        self.add_class("lw-workspace")
        self.patching.observe(self._on_pairs, names=["pairs"])

    # ------------------------------------------------------------------ public API
    def set_inputs(
        self, clean: str | list[str], corrupted: str | list[str], answer: str | list[str], wrong: str | list[str]
    ) -> None:
        """New prompt pair(s) for the heatmap; the grid and the table follow (see the module)."""
        self.patching.set_inputs(clean, corrupted, answer, wrong)

    @property
    def widgets(self) -> dict[str, Any]:
        """The views by name: ``patching``, ``attention``, ``logit_lens`` (and ``circuit``)."""
        out = {"patching": self.patching, "attention": self.attention, "logit_lens": self.logit_lens}
        if self.circuit is not None:
            out["circuit"] = self.circuit
        return out

    # ------------------------------------------------------------------ linking
    def _sources(self) -> list[str]:
        """The corrupted prompts (all pairs have the clean prompts' token length)."""
        return [p["corrupted"] for p in self.patching.pairs]

    def _on_pairs(self, change: dict) -> None:
        """The heatmap took new prompts: move the grid and the table to the first new pair once
        the heatmap's computation has ended (they run the model themselves)."""
        if not change["new"]:
            return
        self.lens.when_free(self._follow_pairs)

    def _follow_pairs(self) -> None:
        first = self.patching.pairs[0]
        if self.attention.prompt != first["clean"]:
            self.attention.run(first["clean"])
        self.attention.resample_prompts = self._sources()
        if self.logit_lens.prompt != first["clean"]:
            self.logit_lens.run(first["clean"])
        self.logit_lens.set_target(first["answer"])
        self.logit_lens.resample_prompts = [first["corrupted"]]
