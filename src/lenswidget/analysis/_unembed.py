"""The read-out end of a model, as the logit lens and DLA apply it: the unembedding ``W_U``/``b_U``,
the adapter's output transform (Gemma-2 soft-capping), and the final norm, both as the module
applied row by row and as an affine map once its scale is fixed (:class:`NormParams`, read off the
module itself). Also the model's device and vocabulary size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

_NORM_TYPES = ("LN", "LNPre", "RMS", "RMSPre")



def model_device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def _d_vocab(model: Any) -> int:
    return int(model.W_U.shape[1])


def unembed_params(model: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(W_U [d_model, d_vocab], b_U [d_vocab] or None)``, detached."""
    W_U = model.W_U.detach()
    b_U = getattr(model, "b_U", None)
    return W_U, (b_U.detach() if isinstance(b_U, torch.Tensor) else None)


def output_transform(model: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The adapter's post-unembedding transform (Gemma-2 soft-capping), or ``None``."""
    fn = getattr(getattr(model, "adapter", None), "apply_output_logits_transform", None)
    return fn if callable(fn) else None


def final_norm(model: Any) -> torch.nn.Module | None:
    """The module the model applies before unembedding, or ``None`` when it has no final norm."""
    if getattr(model.cfg, "normalization_type", None) not in _NORM_TYPES:
        return None
    ln = getattr(model, "ln_final", None)
    return ln if isinstance(ln, torch.nn.Module) else None


def apply_final_norm(model: Any, x: torch.Tensor) -> torch.Tensor:
    """``ln_final`` applied to each row of ``x`` [N, d_model] with its own statistics (TL's
    ``apply_ln_to_stack(recompute_ln=True)``); ``x`` unchanged for a model with no final norm."""
    ln = final_norm(model)
    if ln is None:
        return x
    with torch.no_grad():
        return ln(x[None]).reshape(x.shape)


@dataclass(frozen=True)
class NormParams:
    """The final norm as an affine map once its scale is fixed:
    ``ln(x) = gamma * P(x) / scale(x) + beta`` with ``P`` the mean subtraction (LayerNorm) or the
    identity (RMSNorm), ``scale(x) = sqrt(mean(P(x)**2) + eps)``."""

    center: bool
    gamma: torch.Tensor
    beta: torch.Tensor
    eps: float
    present: bool

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(-1, keepdim=True) if self.center else x

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """The scale of each row of ``x`` [..., d_model] -> [..., 1] (1 with no final norm)."""
        if not self.present:
            return torch.ones_like(x[..., :1])
        p = self.project(x.float())
        return (p.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()


def norm_params(model: Any) -> NormParams:
    """Read the final norm's effective ``gamma`` and ``beta`` by evaluating the module itself (so
    Gemma's ``1 + weight``, parameter-free LNPre and folded compatibility-mode norms all come out
    right), and its kind and epsilon from the bridge."""
    d_model = int(model.cfg.d_model)
    ln = final_norm(model)
    dev = model_device(model)
    if ln is None:
        return NormParams(False, torch.ones(d_model, device=dev), torch.zeros(d_model, device=dev), 0.0, False)
    norm_type = model.cfg.normalization_type
    rms = getattr(ln, "uses_rms_norm", None)
    if rms is None:
        rms = norm_type in ("RMS", "RMSPre") or bool(getattr(model.cfg, "final_rms", False))
    center = not rms
    orig = getattr(ln, "original_component", None)
    eps = None
    for holder in (orig, ln):
        for attr in ("eps", "variance_epsilon"):
            val = getattr(holder, attr, None)
            if isinstance(val, (int, float)) and not isinstance(val, bool):
                eps = float(val)
                break
        if eps is not None:
            break
    if eps is None:
        eps = float(getattr(model.cfg, "eps", 1e-5))
    dtype = model.W_U.dtype
    with torch.no_grad():
        beta = ln(torch.zeros(1, 1, d_model, device=dev, dtype=dtype)).reshape(-1).float()
        # A large input makes eps negligible: normalized = P(v) / rms(P(v)) exactly enough.
        v = torch.ones(d_model, device=dev, dtype=torch.float32)
        v[1::2] = -1.0
        p = v - v.mean() if center else v
        n = p / p.pow(2).mean().sqrt()
        out = ln((1e3 * v).to(dtype).reshape(1, 1, d_model)).reshape(-1).float()
        gamma = (out - beta) / n
    return NormParams(center, gamma, beta, eps, True)
