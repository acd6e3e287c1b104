"""The gradient of a head's query/key/value input, per head, for the gradient engine
(:mod:`._edge_gradients`).

A block's attention reads one residual ``x`` through ``ln1`` and every head's (KV group's)
projection. EAP needs ``dm/dx`` *per head*: :class:`_PerHeadInput` sits on ``hook_q``/``k``/``v``
(forward: the value unchanged); its backward maps the value's gradient ``[rows, pos, G, d_head]``
through each head's weights ``W[g]`` and the vector-Jacobian product of the model's own ``ln1``
at ``x`` (closed form for LayerNorm / RMSNorm, checked once per layer against autograd through
the module; autograd on one copy per head otherwise), hands the ``G`` gradients ``[G, rows, pos,
d_model]`` to the engine's sink, and returns their sum to ``x``, as the model's graph would.
"""

from __future__ import annotations

from typing import Any

import torch

from ._edge_runs import Weights


class _PerHeadInput(torch.autograd.Function):
    """Identity on a ``hook_q``/``k``/``v`` value whose backward gives each head's residual its own
    gradient (see the module docstring) and hands those [G, rows, pos, d] to ``sink``."""

    @staticmethod
    def forward(ctx, res: torch.Tensor, value: torch.Tensor, spec: tuple) -> torch.Tensor:  # noqa: ANN001
        ctx.spec = spec
        ctx.save_for_backward(res)
        return value.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        (res,) = ctx.saved_tensors
        weights, layer, kind, sink = ctx.spec
        W = weights.get(f"W_{kind.upper()}", layer)  # [G, d, dh]
        norm = _norm(weights, layer, res)
        if norm is None:  # any norm: autograd through the model's own ln1, on one copy per head
            gy = torch.einsum("npge,gde->gnpd", grad.to(W.dtype), W)  # [G, rows, p, d]
            gx = _ln_vjp(weights.model.blocks[layer].ln1, res, gy)
        else:  # LayerNorm / RMSNorm, in closed form (checked against autograd by _norm)
            gx = _norm_vjp(norm, W, grad)
        sink.add(layer, kind, gx)
        return gx.sum(0).to(res.dtype), None, None


def _ln_vjp(ln: Any, res: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """[G, *res.shape]: the vector-Jacobian product of ``ln`` at ``res`` with each ``gy[g]``."""
    G = gy.shape[0]
    with torch.enable_grad():
        xe = res.detach().unsqueeze(0).expand(G, *res.shape).reshape(G * res.shape[0], *res.shape[1:])
        xe.requires_grad_(True)
        y = ln(xe)
        (gx,) = torch.autograd.grad(y, xe, gy.reshape(y.shape).to(y.dtype))
    return gx.reshape(G, *res.shape)


def _norm(weights: Weights, layer: int, res: torch.Tensor) -> dict | None:
    """The closed form of ``ln1`` at ``res``: ``ln1(x) = w * xn + b`` with ``xn`` the
    RMS-normalized (``centred``: mean-removed) ``x`` times ``s = 1 / sqrt(mean + eps)``. ``w`` is
    read off the module (``(ln1(x) - ln1(-x)) / 2 = w * xn``, least squares over positions), and
    the closed-form gradient is checked once per layer against autograd through the module;
    None (use autograd) for any other norm or a failed check."""
    cfg = weights.model.cfg
    kind = str(getattr(cfg, "normalization_type", "") or "")
    if kind not in ("LN", "LNPre", "RMS", "RMSPre") or not res.dtype.is_floating_point:
        return None
    ln = weights.model.blocks[layer].ln1
    key = ("norm", layer)
    centred = kind.startswith("LN")
    eps = float(getattr(cfg, "eps", 1e-5))
    with torch.no_grad():
        x = res.detach().float()
        xc = x - x.mean(-1, keepdim=True) if centred else x
        s = torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + eps)
        xn = xc * s
        if key not in weights._cache:
            t = res.detach().reshape(-1, res.shape[-1])[:64]
            D = (ln(t[None]) - ln(-t[None]))[0].float() / 2
            nt = xn.reshape(-1, xn.shape[-1])[:64]
            w = (D * nt).sum(0) / nt.pow(2).sum(0).clamp_min(1e-30)
            norm = {"w": w, "centred": centred, "s": s[:1], "xn": xn[:1]}
            g = torch.randn(2, *res[:1].shape, generator=torch.Generator().manual_seed(0)).to(res.device, res.dtype)
            want = _ln_vjp(ln, res[:1], g).float()
            got = _closed_vjp(norm, g.float())
            ok = bool(((got - want).abs().max() <= 1e-4 * (1 + want.abs().max())).item())
            weights._cache[key] = w if ok else None
    w = weights._cache[key]
    return None if w is None else {"w": w, "centred": centred, "s": s, "xn": xn}


def _closed_vjp(norm: dict, gy: torch.Tensor) -> torch.Tensor:
    """``s * (a - mean(a) - xn * mean(a * xn))`` with ``a = w * gy`` [G, rows, p, d] (no mean(a)
    term for RMSNorm)."""
    a = gy * norm["w"]
    xn, s = norm["xn"], norm["s"]
    out = a - xn * (a * xn).mean(-1, keepdim=True)
    if norm["centred"]:
        out = out - a.mean(-1, keepdim=True)
    return out * s


def _norm_vjp(norm: dict, W: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """:func:`_closed_vjp` of ``grad`` [rows, p, G, dh] through ``W`` [G, d, dh], with the weight
    folded into ``W`` and the per-position scalars taken in the head dimension."""
    Wf = W.float() * norm["w"][None, :, None]  # [G, d, dh]
    g = grad.float()
    xn, s = norm["xn"], norm["s"]
    d = xn.shape[-1]
    a = torch.einsum("npge,gde->gnpd", g, Wf)  # [G, rows, p, d]
    m2 = torch.einsum("npge,npge->gnp", g, torch.einsum("npd,gde->npge", xn, Wf)) / d
    a.sub_(xn[None] * m2[..., None])
    if norm["centred"]:
        a.sub_((torch.einsum("npge,ge->gnp", g, Wf.sum(1)) / d)[..., None])
    return a.mul_(s[None])
