"""Where a patch can reach, for the patching engine (``_patching_engine``): which cells need no
run because nothing the metric reads can differ (the prompts' shared prefix; positions after the
last read one; the last block's per-position activations elsewhere), and which positions the
last block of a batch must compute.
"""

from __future__ import annotations

from typing import Any, Sequence

from ._patching_plan import Cell
from ._patching_runs import State
from ._patching_sites import Site, first_position


def _unchanged(site: Site, cells: Sequence[Cell], shared: int, p: int) -> list:
    """The cells whose patch lies wholly in the first ``shared`` positions, where the two runs
    agree: by-position cells before ``shared`` (every cell when the prompts are equal)."""
    by_position = any(d in site.dims for d in ("pos", "dest_pos"))
    return [c for c in cells if shared >= p or (by_position and first_position(site, c) < shared)]


# Activations whose value at one position reaches, in the last block, only that position's output
# (they come after the block's attention has mixed positions, or are its queries / pattern rows).
_PER_POSITION_IN_LAST_BLOCK = ("resid_mid", "resid_post", "attn_out", "mlp_out", "z", "q", "pattern")


def _unread(model: Any, site: Site, cells: Sequence[Cell], positions: list[int] | None) -> list:
    """The by-position cells whose patch cannot reach a position the metric reads (``positions``,
    declared): patched after the last read position (causal attention), or in the last block on
    an activation of :data:`_PER_POSITION_IN_LAST_BLOCK` at a position the metric does not read
    (the final norm and unembedding are per position)."""
    if positions is None or not any(d in site.dims for d in ("pos", "dest_pos")):
        return []
    last, read = int(model.cfg.n_layers) - 1, set(positions)
    causal = getattr(model.cfg, "attention_dir", "causal") == "causal"
    per_position = site.act in _PER_POSITION_IN_LAST_BLOCK
    out = []
    for c in cells:
        q = first_position(site, c)
        if (causal and q > positions[-1]) or (per_position and int(c[0]) == last and q not in read):
            out.append(c)
    return out


def _shared_prefix_reason(st: State, shared: int) -> str:
    """Why the first ``shared`` positions cannot be taken as equal in the two runs ("" when they
    can): the unpatched logits there must agree (they do for every causal model)."""
    if shared == 0:
        return ""
    assert st.base_logits is not None and st.source_logits is not None
    a, b = st.base_logits[:, :shared], st.source_logits[:, :shared]
    err = (a - b).abs().max().item()
    if not err <= 1e-5 * (1.0 + a.abs().max().item()):
        return f"the two runs differ by {err:.3g} at the {shared} positions their tokens share"
    return ""


def _read_queries(model: Any, site: Site, cells: list, start: int,
                  positions: list[int] | None) -> list[int] | None:
    """The positions (from ``start``) the last block of a batch of ``cells`` must compute on a
    model whose attention is ``NativeAttention`` (``_position_start.native_attention``, checked
    once per sweep by the caller): the metric's declared positions, when no patch hooks the last
    block (its activations there are then shaped to the read positions); else None."""
    last = int(model.cfg.n_layers) - 1
    if positions is None:
        return None
    if site.act not in ("resid_pre", "resid_post") and any(int(c[0]) == last for c in cells):
        return None
    after = [q - start for q in positions if q >= start]
    return after or None
