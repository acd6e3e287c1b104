"""Circuits read from the weights alone ("A Mathematical Framework for Transformer Circuits").

Each head is a QK circuit (``W_Q W_Kᵀ``: where it attends) and an OV circuit (``W_V W_O``: what it
writes if it attends there). Heads compose through the residual stream: a later head's query
(Q-composition), key (K-composition) or value (V-composition) reads what an earlier head wrote.

- :func:`composition_scores`: ``‖W_OV¹ · M²‖_F / (‖W_OV¹‖_F ‖M²‖_F)`` for every earlier → later
  head pair, ``M²`` = ``W_QK`` (q), ``W_QKᵀ`` (k) or ``W_OV`` (v); equal to TransformerLens's
  ``TransformerBridge.all_composition_scores("Q" | "K" | "V")``, grouped-query K/V heads expanded to
  the query heads that share them, as TL does. With the random-matrix baseline the framework
  compares against (:func:`random_baseline`).
- :func:`copying_scores`: Σλ / Σ|λ| over the eigenvalues λ of each head's full OV circuit
  ``W_E W_V W_O W_U`` (positive: the head copies the token it attends to). The [d_vocab, d_vocab]
  matrix is never built: its non-zero eigenvalues are those of ``W_O (W_U W_E) W_V`` [d_head, d_head].
- :func:`ov_circuit`: per source token, the tokens the full OV circuit promotes and suppresses.
- :func:`qk_circuit`: the token × token attention scores the weights give for a prompt.
- :func:`direct_path`: the zero-layer bigram table ``W_E W_U`` row by row.

**Norms and biases.** Like TransformerLens's own weight-circuit code, everything uses the matrices
the bridge exposes (``model.W_Q``, ``W_K``, ``W_V``, ``W_O``, ``W_E``, ``W_U``, ``W_pos``) and
ignores every LayerNorm / RMSNorm and every bias (``b_Q``, ``b_K``, ``b_V``, ``b_O``, ``b_U``), as
the framework assumes a model without them. On a bridge in its default mode the norms' learned
scales are therefore left out too; after ``model.enable_compatibility_mode()`` (TL's ``fold_ln``)
the scales are folded into ``W_Q/W_K/W_V`` and ``W_U`` (and the weights centred), so they are
included. The division by each token's norm (a per-token scalar) is never included.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch

from ..errors import Cancelled, InputError
from .ablation import check_head
from .hooks import head_label
from .text import str_tokens

KINDS: tuple[str, ...] = ("q", "k", "v")
_ROW_BLOCK = 64  # rows of the d_model x d_model Gram matrices formed at a time
_DST_LAYERS = 6  # destination layers per product in the composition sweep
_CHUNK = 256  # source tokens per [chunk, d_vocab] block in the OV / direct-path tables


# ---------------------------------------------------------------------------------- weights
def _check_model(model: Any) -> None:
    if any(hasattr(model, a) for a in ("encoder_blocks", "decoder_blocks")):
        raise InputError(
            "Weight circuits need one residual stream; an encoder-decoder model has two, so "
            "composition, OV and QK circuits are not defined across them (TransformerLens refuses too)."
        )
    # on the class: the instance properties stack every layer's weights just to answer hasattr
    if not all(hasattr(type(model), n) or n in vars(model) for n in ("W_Q", "W_K", "W_V", "W_O")):
        raise InputError(f"{type(model).__name__} exposes no attention weights (W_Q, W_K, W_V, W_O).")


def _expand(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Grouped K/V weights [L, n_kv, ...] -> [L, n_heads, ...]: query head h reads group
    h // (n_heads // n_kv) (TransformerLens's ``_expand_kv_heads``)."""
    if w.shape[1] == n_heads:
        return w
    return w.repeat_interleave(n_heads // w.shape[1], dim=1)


def head_weights(model: Any) -> dict[str, torch.Tensor]:
    """Every head's weights as float32 [n_layers, n_heads, ...], K/V expanded to query heads:
    ``W_Q``, ``W_K``, ``W_V`` [L, H, d_model, d_head] and ``W_O`` [L, H, d_head, d_model]."""
    _check_model(model)
    n_layers = int(model.cfg.n_layers)
    with torch.no_grad():
        return {n: torch.stack([layer_weight(model, n, l) for l in range(n_layers)]) for n in ("W_Q", "W_K", "W_V", "W_O")}


def layer_weight(model: Any, name: str, layer: int) -> torch.Tensor:
    """One layer's ``W_Q`` / ``W_K`` / ``W_V`` [n_heads, d_model, d_head] or ``W_O`` [n_heads,
    d_head, d_model], float32, K/V expanded to the query heads: ``model.<name>[layer]`` without
    stacking every layer (what a click needs)."""
    n_heads = int(model.cfg.n_heads)
    try:
        w = getattr(model.blocks[layer].attn, name)
        w = model._reshape_o(w) if name == "W_O" else model._reshape_qkv(w)
    except (AttributeError, TypeError, IndexError):
        w = getattr(model, name)[layer]
    return _expand(w.detach().float()[None], n_heads)[0]


# ---------------------------------------------------------------------------------- composition
@dataclass(frozen=True)
class Composition:
    """Composition scores of one kind for every (earlier head, later head) pair.

    Attributes:
        kind: ``"q"``, ``"k"`` or ``"v"``.
        scores: float32 [n_layers, n_heads, n_layers, n_heads]: ``scores[l1, h1, l2, h2]`` is how
            much head ``L{l2}H{h2}``'s query / key / value reads what ``L{l1}H{h1}`` writes; 0
            unless ``l1 < l2`` (TransformerLens's upper-triangular layout).
        labels: the ``L{l}H{h}`` label of each head, layer-major (``n_layers * n_heads``).
        baseline_mean, baseline_std: the same score between random Gaussian matrices of the same
            shapes (:func:`random_baseline`), the framework's reference for "stands out".
    """

    kind: str
    scores: torch.Tensor
    labels: tuple[str, ...]
    baseline_mean: float
    baseline_std: float

    def score(self, src: str, dst: str) -> float:
        """The score from head ``src`` (e.g. ``"L0H3"``) into head ``dst`` (``"L1H2"``)."""
        h = self.scores.shape[1]
        try:
            i, j = self.labels.index(src), self.labels.index(dst)
        except ValueError:
            raise InputError(f"Unknown head label in {src!r} -> {dst!r}: labels are L{{l}}H{{h}}.") from None
        return float(self.scores[i // h, i % h, j // h, j % h])

    def zscore(self) -> torch.Tensor:
        """``(scores - baseline_mean) / baseline_std`` [L, H, L, H] (0 where undefined)."""
        z = (self.scores - self.baseline_mean) / max(self.baseline_std, 1e-12)
        return torch.where(self.mask(), z, torch.zeros_like(z))

    def mask(self) -> torch.Tensor:
        """bool [L, H, L, H]: True where the source layer is before the destination layer."""
        n_layers, n_heads = self.scores.shape[:2]
        lay = torch.arange(n_layers)
        return (lay[:, None] < lay[None, :])[:, None, :, None].expand(n_layers, n_heads, n_layers, n_heads)

    def edges(self, min_score: float | None = None) -> dict[str, float]:
        """Head -> head edges as the circuit graph names them: ``{"L0H3->L1H2.k": score}`` for every
        earlier -> later pair (those with ``score >= min_score`` if given), largest first."""
        flat = self.scores.flatten()
        keep = self.mask().flatten()
        if min_score is not None:
            keep &= flat >= min_score
        idx = torch.nonzero(keep).flatten()
        idx = idx[torch.argsort(flat[idx], descending=True)]
        n = len(self.labels)
        return {f"{self.labels[int(i) // n]}->{self.labels[int(i) % n]}.{self.kind}": float(flat[i]) for i in idx}

    def group_edges(self, n_kv_heads: int) -> dict[str, float]:
        """For a grouped-query model, edges into key/value groups as the circuit graph names them:
        ``{"L0H3->L1KV0.k": score}``, the largest score over the query heads sharing the group
        (each query head reads the group's keys / values through its own W_Q / W_O)."""
        n_layers, n_heads = self.scores.shape[:2]
        if self.kind == "q" or n_kv_heads <= 0 or n_heads % n_kv_heads:
            raise InputError(f"Key/value-group edges need kind 'k' or 'v' and n_heads divisible by n_kv_heads, got {self.kind!r}, {n_kv_heads}.")
        grouped = self.scores.reshape(n_layers, n_heads, n_layers, n_kv_heads, n_heads // n_kv_heads).amax(-1)
        out = {}
        for l1, h1, l2, g in torch.nonzero(torch.ones_like(grouped, dtype=torch.bool)).tolist():
            if l1 < l2:
                out[f"L{l1}H{h1}->L{l2}KV{g}.{self.kind}"] = float(grouped[l1, h1, l2, g])
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def top(self, n: int = 5) -> list[tuple[str, str, float]]:
        """The ``n`` highest-scoring pairs as ``[("L0H3", "L1H2", 0.31), ...]``."""
        return [(e.split("->")[0], e.split("->")[1].split(".")[0], s) for e, s in list(self.edges().items())[:n]]


def _check_kind(kind: Any) -> str:
    if not isinstance(kind, str) or kind.lower() not in KINDS:
        raise InputError(f"Unknown composition kind {kind!r}: use 'q', 'k' or 'v'.")
    return kind.lower()


def _gram_factors(w: dict[str, torch.Tensor], kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(F, T) [N, d_head, d_model] with ``Fᵀ T`` the Gram matrix [d_model, d_model] of a head's
    circuit: ``W_OVᵀ W_OV`` for the writing side (``"left"``), ``M Mᵀ`` of the reading side
    ``M`` = ``W_QK`` (q), ``W_QKᵀ`` (k), ``W_OV`` (v)."""
    flat = {n: t.flatten(0, 1) for n, t in w.items()}  # [N, ...]
    Q, K, V, O = flat["W_Q"], flat["W_K"], flat["W_V"], flat["W_O"]
    gram = lambda a: a.transpose(1, 2) @ a  # [N, d_head, d_head]
    if kind == "left":  # (W_V W_O)ᵀ (W_V W_O) = W_Oᵀ (W_Vᵀ W_V) W_O
        return O, gram(V) @ O
    if kind == "q":  # (W_Q W_Kᵀ)(W_Q W_Kᵀ)ᵀ = W_Q (W_Kᵀ W_K) W_Qᵀ
        return Q.transpose(1, 2), gram(K) @ Q.transpose(1, 2)
    if kind == "k":  # W_QKᵀ W_QK = W_K (W_Qᵀ W_Q) W_Kᵀ
        return K.transpose(1, 2), gram(Q) @ K.transpose(1, 2)
    return V.transpose(1, 2), (O @ O.transpose(1, 2)) @ V.transpose(1, 2)  # W_OV W_OVᵀ


def all_composition_scores(
    model: Any,
    kinds: Iterable[str] = KINDS,
    *,
    progress: Callable[[int, int], Any] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict[str, Composition]:
    """Composition scores of several kinds at once (they share the writing side's work).

    ``‖A B‖_F² = ⟨AᵀA, B Bᵀ⟩`` for every pair is one matrix product of the heads' flattened
    d_model × d_model Gram matrices (formed a block of rows at a time, upper triangle only): no
    pair's product is materialised. Returns ``{kind: Composition}``. ``progress(done, total)`` is
    called after each block of rows; ``cancel()`` is polled before each and raises
    :class:`~lenswidget.errors.Cancelled` when it returns True."""
    kinds = [_check_kind(k) for k in kinds]
    if not kinds:
        raise InputError("No composition kinds given: use some of 'q', 'k', 'v'.")
    w = head_weights(model)
    n_layers, n_heads = w["W_Q"].shape[:2]
    if n_layers < 2:
        raise InputError("Composition needs at least two layers: this model has one.")
    with torch.no_grad():
        factors = {k: _gram_factors(w, k) for k in ["left", *kinds]}
        # squared Frobenius norms of each head's circuit: trace of its Gram matrix
        sq_norm = {k: torch.einsum("nij,nij->n", f, t) for k, (f, t) in factors.items()}
        d_model, n = w["W_Q"].shape[2], n_layers * n_heads
        acc = torch.zeros(n, n, len(kinds), dtype=torch.float64)  # [src head, dst head, kind]
        n_blocks = -(-d_model // _ROW_BLOCK)
        for r0 in range(0, d_model, _ROW_BLOCK):
            if cancel is not None and cancel():
                raise Cancelled("Composition scores cancelled; nothing was changed.")
            r1 = min(r0 + _ROW_BLOCK, d_model)

            def block(name: str) -> torch.Tensor:  # rows r0:r1, columns r0: of every head's Gram
                f, t = factors[name]
                return f[:, :, r0:r1].transpose(1, 2) @ t[:, :, r0:]

            left = block("left")
            left[:, :, r1 - r0:] *= 2  # the strictly upper part stands for the lower part too
            left = left.flatten(1)  # [N, block]
            for i, k in enumerate(kinds):
                right = block(k).flatten(1)  # [N, block]
                # only earlier -> later pairs: destination heads a few layers at a time, against
                # the source heads of the layers before them
                step = _DST_LAYERS * n_heads
                for c0 in range(n_heads, n, step):
                    c1 = min(c0 + step, n)
                    acc[: c1 - n_heads, c0:c1, i] += (left[: c1 - n_heads] @ right[c0:c1].T).double()
            if progress is not None:
                progress(r0 // _ROW_BLOCK + 1, n_blocks)
    base_mean, base_std = random_baseline(model)
    labels = tuple(head_label(l, h) for l in range(n_layers) for h in range(n_heads))
    out = {}
    for i, k in enumerate(kinds):
        norms = sq_norm["left"].double().sqrt()[:, None] * sq_norm[k].double().sqrt()[None, :]
        scores = (acc[..., i].clamp_min(0).sqrt() / norms).float().reshape(n_layers, n_heads, n_layers, n_heads)
        comp = Composition(k, scores, labels, base_mean, base_std)
        out[k] = Composition(k, torch.where(comp.mask(), scores, torch.zeros_like(scores)), labels, base_mean, base_std)
    return out


def composition_scores(model: Any, kind: str) -> Composition:
    """Composition scores of ``kind`` (``"q"``, ``"k"`` or ``"v"``) for every earlier -> later
    head pair: a :class:`Composition` whose ``scores`` [L, H, L, H] equal TransformerLens's
    ``model.all_composition_scores(kind.upper())``. ``.edges()`` names them as the circuit graph does."""
    kind = _check_kind(kind)
    return all_composition_scores(model, [kind])[kind]


def random_baseline(model: Any, n_samples: int = 200, seed: int = 0) -> tuple[float, float]:
    """``(mean, std)`` of the composition score between random Gaussian matrices of ``model``'s
    shapes (:func:`_random_baseline`); the framework's reference for a score that stands out."""
    return _random_baseline(int(model.cfg.d_model), int(model.cfg.d_head), int(n_samples), int(seed))


@functools.lru_cache(maxsize=16)
def _random_baseline(d_model: int, d_head: int, n_samples: int, seed: int) -> tuple[float, float]:
    """Mean and standard deviation of the composition score between random matrices of the
    model's shapes (entries i.i.d. Gaussian: ``A B`` and ``C D`` with A, C [d_model, d_head] and
    B, D [d_head, d_model]). The three kinds share it (their factors have the same shapes).
    Deterministic for a given ``seed`` (and computed once per shape)."""
    gen = torch.Generator().manual_seed(seed)
    a, c = (torch.randn(n_samples, d_model, d_head, generator=gen, dtype=torch.float64) for _ in range(2))
    b, d = (torch.randn(n_samples, d_head, d_model, generator=gen, dtype=torch.float64) for _ in range(2))
    gram = lambda x: x.transpose(1, 2) @ x
    mid = b @ c  # ‖A (B C) D‖² = tr(Mᵀ AᵀA M D Dᵀ)
    num = torch.einsum("nij,nij->n", gram(a) @ mid, mid @ (d @ d.transpose(1, 2))).sqrt()
    den = torch.einsum("nij,nij->n", gram(a), b @ b.transpose(1, 2)).sqrt()
    den = den * torch.einsum("nij,nij->n", gram(c), d @ d.transpose(1, 2)).sqrt()
    s = num / den
    return float(s.mean()), float(s.std())


# ---------------------------------------------------------------------------------- OV: copying
def ov_eigenvalues(model: Any) -> torch.Tensor:
    """complex128 [n_layers, n_heads, d_head]: the non-zero eigenvalues of every head's full OV
    circuit ``W_E W_V W_O W_U`` [d_vocab, d_vocab], computed as those of ``W_O (W_U W_E) W_V``
    [d_head, d_head] (AB and BA share their non-zero eigenvalues; the rest are 0)."""
    _check_model(model)
    n_heads = int(model.cfg.n_heads)
    with torch.no_grad():
        ue = model.W_U.detach().float() @ model.W_E.detach().float()  # [d_model, d_model]
        v = model.W_V.detach().float()  # [L, n_kv, d_model, d_head]: once per key/value group
        uev = _expand(ue @ v, n_heads)  # [L, H, d_model, d_head]
        small = model.W_O.detach().float() @ uev  # [L, H, d_head, d_head]
        return torch.linalg.eigvals(small.double())


def copying_scores(model: Any) -> torch.Tensor:
    """float32 [n_layers, n_heads]: Σλ / Σ|λ| (real part) over the eigenvalues of each head's
    full OV circuit ``W_E W_V W_O W_U``: near 1 for a head that copies the token it attends to,
    negative for one that suppresses it (TransformerLens demo's "OV copying score")."""
    lam = ov_eigenvalues(model)
    return (lam.sum(-1).real / lam.abs().sum(-1).clamp_min(1e-30)).float().cpu()


# ---------------------------------------------------------------------------------- token tables
@dataclass(frozen=True)
class TokenTable:
    """Per source token, the logits one path of the weights writes, summarised.

    Attributes:
        what: ``"ov L1H2"`` or ``"direct"``; ``label`` the head label or ``"embed->logits"``.
        source_ids: LongTensor [S].
        top_ids, top_values: [S, k]: the most promoted tokens and their logits, largest first.
        bottom_ids, bottom_values: [S, k]: the most suppressed, most negative first.
        self_values: [S]: the logit of the source token itself; ``self_ranks`` [S]: how many
            tokens get a larger one (0 = the source token is promoted most: copying).
    """

    what: str
    label: str
    source_ids: torch.Tensor
    top_ids: torch.Tensor
    top_values: torch.Tensor
    bottom_ids: torch.Tensor
    bottom_values: torch.Tensor
    self_values: torch.Tensor
    self_ranks: torch.Tensor

    def to_json(self, model: Any = None) -> dict:
        """``{what, label, rows: [{source, source_id, top: [{token, id, value}], bottom, self_value,
        self_rank}]}``: what the view draws (token strings as text)."""
        ids = sorted(set(self.source_ids.tolist()) | set(self.top_ids.flatten().tolist()) | set(self.bottom_ids.flatten().tolist()))
        text = dict(zip(ids, str_tokens(model, ids)))
        cell = lambda i, v: {"token": text[int(i)], "id": int(i), "value": float(v)}
        rows = []
        for s in range(int(self.source_ids.shape[0])):
            rows.append({
                "source": text[int(self.source_ids[s])],
                "source_id": int(self.source_ids[s]),
                "top": [cell(i, v) for i, v in zip(self.top_ids[s], self.top_values[s])],
                "bottom": [cell(i, v) for i, v in zip(self.bottom_ids[s], self.bottom_values[s])],
                "self_value": float(self.self_values[s]),
                "self_rank": int(self.self_ranks[s]),
            })
        return {"what": self.what, "label": self.label, "rows": rows}


def _source_ids(model: Any, tokens: Any) -> torch.Tensor:
    if isinstance(tokens, torch.Tensor):
        if tokens.is_floating_point() and tokens.numel():
            raise InputError("Token ids must be integers, got a float tensor.")
        ids = tokens.reshape(-1).long().cpu()
    elif isinstance(tokens, Sequence) and not isinstance(tokens, str) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in tokens
    ):
        ids = torch.tensor(list(tokens), dtype=torch.long)
    else:
        raise InputError(f"Give token ids as a tensor or a list of ints, got {type(tokens).__name__}.")
    if ids.numel() == 0:
        raise InputError("The token list is empty: give at least one token id.")
    d_vocab = int(model.cfg.d_vocab)
    bad = ids[(ids < 0) | (ids >= d_vocab)]
    if bad.numel():
        raise InputError(f"Token id {int(bad[0])} is outside the vocabulary (0..{d_vocab - 1}).")
    return ids


def _table(model: Any, what: str, label: str, ids: torch.Tensor, proj: Callable[[torch.Tensor], torch.Tensor], k: int) -> TokenTable:
    """Rows ``proj(W_E[ids])`` [S, d_vocab], a chunk of sources at a time, summarised by top-k."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= int(model.cfg.d_vocab):
        raise InputError(f"k must be an integer between 1 and the vocabulary size, got {k!r}.")
    W_E = model.W_E.detach().float()
    parts: list[tuple[torch.Tensor, ...]] = []
    with torch.no_grad():
        for c in range(0, ids.numel(), _CHUNK):
            src = ids[c:c + _CHUNK]
            rows = proj(W_E[src.to(W_E.device)])  # [chunk, d_vocab]
            top = rows.topk(k, dim=-1)
            bottom = rows.topk(k, dim=-1, largest=False)
            own = rows.gather(1, src.to(rows.device)[:, None])  # [chunk, 1]
            parts.append((top.indices, top.values, bottom.indices, bottom.values, own[:, 0], (rows > own).sum(-1)))
    cat = [torch.cat([p[i] for p in parts]).cpu() for i in range(6)]
    return TokenTable(what, label, ids, *cat)


def ov_circuit(model: Any, layer: int, head: int, source_tokens: Any, k: int = 10) -> TokenTable:
    """For each source token s, what head ``(layer, head)`` writes to the logits if it attends
    to s: the row ``W_E[s] W_V W_O W_U`` [d_vocab] of the full OV circuit, summarised as the
    top-``k`` promoted and suppressed tokens and s's own logit and rank. Rows are computed a
    chunk of sources at a time, never the [d_vocab, d_vocab] matrix. Norms and biases ignored
    (module docstring)."""
    _check_model(model)
    layer, head = check_head(model, layer, head)
    ids = _source_ids(model, source_tokens)
    with torch.no_grad():
        v = layer_weight(model, "W_V", layer)[head]  # [d_model, d_head]
        o = layer_weight(model, "W_O", layer)[head]  # [d_head, d_model]
        W_U = model.W_U.detach().float()
    # (x W_V) W_O first: [chunk, d_model] @ W_U is the only product with d_vocab in it
    return _table(model, f"ov {head_label(layer, head)}", head_label(layer, head), ids, lambda x: ((x @ v) @ o) @ W_U, k)


def direct_path(model: Any, tokens: Any, k: int = 10) -> TokenTable:
    """For each token t (in order), what the direct path embed -> unembed alone predicts next:
    the row ``W_E[t] W_U`` [d_vocab] (a zero-layer model's bigram logits), top-``k`` promoted and
    suppressed. Norms and biases ignored (module docstring)."""
    _check_model(model)
    ids = _source_ids(model, tokens)
    W_U = model.W_U.detach().float()
    return _table(model, "direct", "embed->logits", ids, lambda x: x @ W_U, k)


# ---------------------------------------------------------------------------------- QK
def qk_circuit(model: Any, layer: int, head: int, tokens: Any, *, positional: bool = True) -> torch.Tensor:
    """float32 [pos, pos] (query, key): the attention score the weights give head ``(layer, head)``
    from each token of a prompt to each, ``x_q W_Q W_Kᵀ x_kᵀ`` with ``x`` = ``W_E[token]`` (the
    framework's ``W_Eᵀ W_QK W_E``; not divided by √d_head; keys after the query are included,
    a causal model masks them).

    With learned absolute positions (``positional_embedding_type == "standard"``, e.g. GPT-2)
    and ``positional=True``, ``x`` also adds ``W_pos[position]``. For rotary models the score is
    content-only: it is the exact pre-rotation bilinear form, which equals the rotated score only
    where query and key are at the same relative distance 0; it leaves out how the rotation by
    the query-key distance changes each pair's score (so it cannot show positional heads such as
    previous-token heads). Norms, biases and earlier layers are left out (module docstring)."""
    _check_model(model)
    layer, head = check_head(model, layer, head)
    ids = _source_ids(model, tokens)
    with torch.no_grad():
        x = model.W_E.detach().float()[ids.to(model.W_E.device)]
        if positional and getattr(model.cfg, "positional_embedding_type", "") == "standard":
            x = x + model.W_pos.detach().float()[: ids.numel()]
        q = x @ layer_weight(model, "W_Q", layer)[head]
        k = x @ layer_weight(model, "W_K", layer)[head]
        return (q @ k.T).cpu()
