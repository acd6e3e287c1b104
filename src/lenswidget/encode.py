"""Tensors to binary buffers for the front end (decoded by ``js/lib/buffers.ts``).

Never JSON lists: a JSON float list is ~5.5x the float32 bytes and seconds of encoding.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

Dtype = Literal["f16", "f32", "u8"]


def encode_tensor(t: torch.Tensor, dtype: Dtype = "f16", *, lo: float | None = None, hi: float | None = None) -> tuple[bytes, dict]:
    """Encode ``t`` as little-endian bytes and a meta dict ``{dtype, shape, scale, offset}``.

    ``f16``/``f32`` are IEEE floats (2/4 bytes a value). ``u8`` quantizes to one byte a value over
    ``[lo, hi]`` (default the tensor's range): value = offset + scale * byte.
    """
    arr = t.detach().to("cpu", torch.float32).contiguous().numpy()
    meta: dict = {"dtype": dtype, "shape": list(arr.shape), "scale": 1.0, "offset": 0.0}
    if dtype == "f32":
        data = arr.astype("<f4").tobytes()
    elif dtype == "f16":
        data = arr.astype("<f2").tobytes()
    elif dtype == "u8":
        lo = float(np.nanmin(arr)) if lo is None and arr.size else float(lo or 0.0)
        hi = float(np.nanmax(arr)) if hi is None and arr.size else float(hi if hi is not None else 1.0)
        scale = (hi - lo) / 255.0 if hi > lo else 1.0
        q = np.clip(np.rint((arr - lo) / scale), 0, 255).astype(np.uint8)
        data = q.tobytes()
        meta.update(scale=scale, offset=lo)
    else:  # pragma: no cover - guarded by Literal
        raise ValueError(f"unknown dtype {dtype!r}")
    return data, meta


def decode_tensor(data: bytes, meta: dict) -> torch.Tensor:
    """Inverse of :func:`encode_tensor` (used in tests and by Python-side consumers)."""
    dtype = meta["dtype"]
    np_dtype = {"f32": "<f4", "f16": "<f2", "u8": np.uint8}[dtype]
    arr = np.frombuffer(data, dtype=np_dtype).astype(np.float32)
    if dtype == "u8":
        arr = meta["offset"] + meta["scale"] * arr
    return torch.from_numpy(arr.reshape(meta["shape"]).copy())


def encode_tril(t: torch.Tensor, dtype: Dtype = "f16", *, lo: float | None = None, hi: float | None = None) -> tuple[bytes, dict]:
    """Encode the lower triangle (diagonal included) of square matrices ``t`` [..., n, n], row by
    row (row q holds keys 0..q): n(n+1)/2 values a matrix, half of the bytes of a causal pattern.
    The meta is :func:`encode_tensor`'s for shape [..., n(n+1)/2] plus ``layout: "tril"``, ``size: n``."""
    n = int(t.shape[-1])
    rows, cols = torch.tril_indices(n, n, device=t.device)
    data, meta = encode_tensor(t[..., rows, cols], dtype, lo=lo, hi=hi)
    meta.update(layout="tril", size=n)
    return data, meta


def decode_tril(data: bytes, meta: dict) -> torch.Tensor:
    """Inverse of :func:`encode_tril`: [..., n, n] with zeros above the diagonal."""
    flat = decode_tensor(data, meta)
    n = int(meta["size"])
    out = torch.zeros(*flat.shape[:-1], n, n)
    rows, cols = torch.tril_indices(n, n)
    out[..., rows, cols] = flat
    return out
