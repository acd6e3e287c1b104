"""`Lens`: one model session shared by several widgets.

The session owns the model, tokenization (with the checks that turn bad input into clear
errors), a small cache of runs keyed by input, the device, and the rule that one computation runs
at a time. Widgets are made from it (``lens.attention(prompt)``) and share it, so a selection in
one view can drive another.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch

from .analysis.ablation import check_head
from .analysis.readout import model_device
from .analysis.text import str_tokens
from .errors import Busy, InputError
from .selection import Selection, SelectionHub, parse_selection

if TYPE_CHECKING:  # pragma: no cover
    from transformer_lens.ActivationCache import ActivationCache

    from .widgets.attention import AttentionGrid
    from .widgets.circuit import CircuitGraph
    from .widgets.logit_lens import LogitLensTable
    from .widgets.patching import PatchingHeatmap
    from .widgets.weights import WeightsView
    from .widgets.workspace import Workspace


@dataclass(frozen=True)
class Run:
    """One forward pass: ``logits`` [1, pos, d_vocab] and the activation cache of that pass."""

    tokens: torch.Tensor
    logits: torch.Tensor
    cache: "ActivationCache"


class Lens:
    """A model session.

    Args:
        model: a TransformerLens ``TransformerBridge`` (see :mod:`lenswidget.models`). It is put
            in eval mode; its weights are not changed.
        device: where to run; default: the model's device.
        cache_size: how many distinct inputs to keep forward runs of.
    """

    def __init__(self, model: Any, *, device: str | torch.device | None = None, cache_size: int = 4):
        if not hasattr(model, "run_with_cache") or not hasattr(model, "cfg"):
            raise TypeError(
                "Lens needs a TransformerLens model (TransformerBridge); got "
                f"{type(model).__name__}. Use lenswidget.models.load(...) to wrap a Hugging Face model."
            )
        self.model = model.eval()
        if device is not None:
            self.model.to(device)
        self._cache_size = int(cache_size)
        self._runs: "OrderedDict[tuple[int, ...], Run]" = OrderedDict()
        self._lock = threading.Lock()
        self._running: str = ""
        self._owner: int | None = None  # thread id holding the computation
        self._selection = SelectionHub()

    # ------------------------------------------------------------------ model facts
    @property
    def cfg(self) -> Any:
        return self.model.cfg

    @property
    def n_layers(self) -> int:
        return int(self.cfg.n_layers)

    @property
    def n_heads(self) -> int:
        return int(self.cfg.n_heads)

    @property
    def n_ctx(self) -> int:
        return int(self.cfg.n_ctx)

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def __repr__(self) -> str:
        name = getattr(self.cfg, "model_name", type(self.model).__name__)
        return f"Lens({name!r}, n_layers={self.n_layers}, n_heads={self.n_heads}, device={self.device})"

    # ------------------------------------------------------------------ tokens
    def tokenize(self, prompt: str, *, what: str = "prompt") -> torch.Tensor:
        """Token ids of ``prompt`` as a LongTensor [1, pos] (BOS prepended as the model does).

        Raises :class:`InputError` for a non-string or empty prompt, or one longer than the
        model's context."""
        if not isinstance(prompt, str):
            raise InputError(f"The {what} must be text, got {type(prompt).__name__}.")
        if not prompt.strip():
            raise InputError(f"The {what} is empty: type some text to run the model on.")
        tokens = self.model.to_tokens(prompt, truncate=False)
        if tokens.ndim == 1:
            tokens = tokens[None]
        n = int(tokens.shape[-1])
        if n > self.n_ctx:
            raise InputError(
                f"The {what} is {n} tokens long, more than the model's context of {self.n_ctx} tokens. "
                "Shorten it.",
                details={"n_tokens": n, "n_ctx": self.n_ctx},
            )
        return tokens.to(self.device)

    def str_tokens(self, tokens: torch.Tensor | Sequence[int] | str) -> list[str]:
        """The text of each token (a list of plain strings, never HTML)."""
        if isinstance(tokens, str):
            tokens = self.tokenize(tokens)
        if isinstance(tokens, torch.Tensor) and tokens.ndim == 2:
            tokens = tokens[0]
        return str_tokens(self.model, [int(t) for t in tokens])

    def token_id(self, text: str | int, *, what: str = "answer") -> int:
        """The id of ``text`` if it is exactly one token (no BOS); otherwise an :class:`InputError`
        that shows how it tokenizes. An int is checked to be a valid id."""
        d_vocab = int(self.cfg.d_vocab)
        if isinstance(text, bool) or not isinstance(text, (str, int)):
            raise InputError(f"The {what} must be a token string or id, got {type(text).__name__}.")
        if isinstance(text, int):
            if not 0 <= text < d_vocab:
                raise InputError(f"The {what} id {text} is outside the vocabulary (0..{d_vocab - 1}).")
            return text
        if text == "":
            raise InputError(f"The {what} is empty: give a single token such as ' Paris'.")
        ids = self.model.to_tokens(text, prepend_bos=False)[0].tolist()
        if len(ids) != 1:
            pieces = str_tokens(self.model, ids)
            raise InputError(
                f"The {what} {text!r} is {len(ids)} tokens, not one: {pieces!r}. "
                "Use a single token (often with a leading space, e.g. ' Paris').",
                details={"text": text, "tokens": pieces},
            )
        return int(ids[0])

    # ------------------------------------------------------------------ checks
    def check_head(self, layer: Any, head: Any) -> tuple[int, int]:
        """``(layer, head)`` as ints in range, or an :class:`InputError`."""
        return check_head(self.model, layer, head)

    # ------------------------------------------------------------------ runs
    #: :meth:`run` refuses inputs whose full activation cache would be larger than this
    max_cache_bytes: int = 6 * 1024**3

    def cache_bytes(self, batch: int, pos: int) -> int:
        """About how many bytes :meth:`run`'s full activation cache of ``batch`` x ``pos`` tokens
        takes: per layer two [heads, pos, pos] tensors (scores, pattern) and ~16 d_model + 3 d_mlp
        wide activations, float32."""
        cfg = self.cfg
        d_mlp = int(getattr(cfg, "d_mlp", 0) or 4 * int(cfg.d_model))
        per_layer = 2 * self.n_heads * pos * pos + pos * (16 * int(cfg.d_model) + 3 * d_mlp)
        return 4 * batch * self.n_layers * per_layer

    def run(self, tokens: torch.Tensor) -> Run:
        """A forward pass with the full activation cache, memoised for the last few inputs.

        Raises :class:`InputError` when that cache would exceed :attr:`max_cache_bytes` (a
        4,000-token prompt on SmolLM2 would need ~35 GB); the attention grid streams instead."""
        key = tuple(int(t) for t in tokens.reshape(-1).tolist()) + (int(tokens.shape[0]),)
        hit = self._runs.get(key)
        if hit is not None:
            self._runs.move_to_end(key)
            return hit
        need = self.cache_bytes(int(tokens.shape[0]), int(tokens.shape[-1]))
        if need > self.max_cache_bytes:
            raise InputError(
                f"This input is {tokens.shape[-1]} tokens: its activation cache would take about "
                f"{need / 1024**3:.1f} GiB, more than this lens allows ({self.max_cache_bytes / 1024**3:.1f} GiB, "
                "Lens.max_cache_bytes). Shorten the prompt, or raise lens.max_cache_bytes if the memory is there.",
                details={"n_tokens": int(tokens.shape[-1]), "cache_bytes": need},
            )
        with torch.inference_mode():
            logits, cache = self.model.run_with_cache(tokens)
        run = Run(tokens=tokens, logits=logits, cache=cache)
        self._runs[key] = run
        while len(self._runs) > self._cache_size:
            self._runs.popitem(last=False)
        return run

    def clear_cache(self) -> None:
        """Forget memoised runs (e.g. after changing the model's weights)."""
        self._runs.clear()

    @contextlib.contextmanager
    def computation(self, name: str, *, wait: bool = True) -> Iterator[None]:
        """Hold the session for one computation. With ``wait=False`` a busy session raises
        :class:`Busy` at once (what widget clicks use); otherwise it waits its turn."""
        if not self._lock.acquire(blocking=wait):
            raise Busy(f"The model is busy with '{self._running}'. Wait for it to finish or cancel it.")
        self._running = name
        self._owner = threading.get_ident()
        try:
            yield
        finally:
            self._running = ""
            self._owner = None
            self._lock.release()
            self._selection.flush()  # observers of a selection made inside may now run the model

    @property
    def running(self) -> str:
        """The name of the computation in progress, or ``""``."""
        return self._running

    # ------------------------------------------------------------------ linked selection
    def select(self, label: Any, prompt: str | None = None, *, source: Any = None) -> Selection | None:
        """Select one component for every widget of this lens; returns the :class:`Selection`.

        ``label`` is ``"L9H9"`` (or ``(9, 9)``), ``"L3KV1"`` (a key/value group), ``"mlp3"``,
        ``"attn3"``, ``"embed"`` or ``"logits"``; ``None`` clears the selection. ``prompt`` is the
        prompt it was picked on (the attention grid then shows that head on that prompt); None
        keeps each view's own prompt. ``source`` is the publishing widget (it is not notified of
        its own selection). Observers are called at once, or, when called inside a computation
        of this lens (a widget's click handler), as soon as that computation ends.

        Raises :class:`InputError` for a component this model does not have (a head or layer out
        of range, an MLP in an attention-only model) or a prompt the model cannot take; the
        previous selection is kept."""
        if label is None:
            selection = None
        else:
            if prompt is not None:
                self.tokenize(prompt)  # a bad prompt fails here, not later in an observer
            name = "python" if source is None else type(source).__name__
            selection = parse_selection(self.model, label, prompt, name)
        self._selection.set(selection, defer=self._owner == threading.get_ident(), publisher=source)
        return selection

    @property
    def selection(self) -> Selection | None:
        """The current :class:`Selection` (label, layer, heads, prompt, source), or None."""
        return self._selection.current

    def observe_selection(self, callback: Any) -> Any:
        """Call ``callback(selection)`` whenever :meth:`select` changes the selection (a bound
        method is held weakly). Returns a function that stops the observation."""
        return self._selection.observe(callback)

    def when_free(self, fn: Any) -> None:
        """Call ``fn()`` now, or, when this thread holds this lens's computation (inside a widget's
        click handler), as soon as that computation ends: for a widget that reacts to another by
        running the model. Errors are logged, not raised."""
        self._selection.later(fn, defer=self._owner == threading.get_ident())

    # ------------------------------------------------------------------ widgets
    def attention(self, prompt: str, **kwargs: Any) -> "AttentionGrid":
        """An :class:`~lenswidget.widgets.attention.AttentionGrid` of every head on ``prompt``."""
        from .widgets.attention import AttentionGrid

        return AttentionGrid(self, prompt, **kwargs)

    def patching(
        self, clean: str | list[str], corrupted: str | list[str], answer: str | list[str], wrong: str | list[str],
        **kwargs: Any,
    ) -> "PatchingHeatmap":
        """A :class:`~lenswidget.widgets.patching.PatchingHeatmap` for a clean/corrupted prompt pair, or
        a dataset of pairs (lists; ``answer`` / ``wrong`` one for all pairs or one per pair)."""
        from .widgets.patching import PatchingHeatmap

        return PatchingHeatmap(self, clean, corrupted, answer, wrong, **kwargs)

    def logit_lens(self, prompt: str, **kwargs: Any) -> "LogitLensTable":
        """A :class:`~lenswidget.widgets.logit_lens.LogitLensTable` of what each layer predicts."""
        from .widgets.logit_lens import LogitLensTable

        return LogitLensTable(self, prompt, **kwargs)

    def circuit(self, clean: str, corrupted: str, answer: str, wrong: str, **kwargs: Any) -> "CircuitGraph":
        """A :class:`~lenswidget.widgets.circuit.CircuitGraph`: the edges that carry answer − wrong
        from the clean prompt into the corrupted run (EAP-IG), drawn as a clickable circuit."""
        from .widgets.circuit import CircuitGraph

        return CircuitGraph(self, clean, corrupted, answer, wrong, **kwargs)

    def workspace(self, clean: Any, corrupted: Any, answer: Any, wrong: Any, **kwargs: Any) -> "Workspace":
        """A :class:`~lenswidget.widgets.workspace.Workspace`: the patching heatmap, the attention
        grid and the logit-lens table (and the circuit graph) in one output, linked by
        :attr:`selection`. Takes what :meth:`patching` takes (one pair or lists of them)."""
        from .widgets.workspace import Workspace

        return Workspace(self, clean, corrupted, answer, wrong, **kwargs)

    def weights(self, prompt: str, **kwargs: Any) -> "WeightsView":
        """A :class:`~lenswidget.widgets.weights.WeightsView`: composition scores between heads
        and copying scores read from the weights; the pair and head panels show ``prompt``."""
        from .widgets.weights import WeightsView

        return WeightsView(self, prompt, **kwargs)
