"""Patching metrics: callables from the logits of one run of a prompt batch to a scalar.

Each metric takes ``logits`` shaped ``[batch, pos, vocab]`` (one run of the whole prompt batch,
as TransformerLens's patching functions pass them) and returns a 0-d tensor, differentiable so
that :func:`~lenswidget.analysis.attribution_patching` can use it. Any callable with that
contract can be used instead. On a batch of prompts (a dataset) the metrics here are the mean
over prompts, and ``metric.per_prompt(logits)`` gives the ``[batch]`` terms of that mean (answer,
wrong answer and position may each be one for all prompts or one per prompt).

A metric may declare the sequence positions it reads as a ``positions`` attribute (a tuple of
ints, negative counting from the end; the metrics here do). :func:`~lenswidget.analysis.patch_sweep`
then computes the final LayerNorm and unembedding only there, and hands the metric logits that
are NaN at every other position. A callable without ``positions`` gets every position's logits.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import torch

from ..errors import InputError

__all__ = ["logit_diff_metric", "answer_prob_metric", "normalized_metric", "Metric"]

Metric = Callable[[torch.Tensor], torch.Tensor]
Ids = Union[int, Sequence[int], torch.Tensor]
Pos = Union[int, Sequence[int], torch.Tensor]


def _ids(ids: Ids, what: str) -> torch.Tensor:
    t = torch.as_tensor(ids)
    if t.numel() == 0:
        raise InputError(f"{what} is empty: give one token id, or one per prompt")
    if t.is_floating_point() or t.dtype == torch.bool:
        raise InputError(f"{what} must be token ids (ints), got dtype {t.dtype}")
    return t.reshape(-1).long()


def _per_prompt(t: torch.Tensor, batch: int, what: str) -> torch.Tensor:
    if t.numel() == 1:
        return t.expand(batch)
    if t.numel() != batch:
        raise InputError(
            f"{what} has {t.numel()} entries for a batch of {batch} prompts: give one for all "
            "prompts or one per prompt",
            details={"entries": int(t.numel()), "batch": batch},
        )
    return t


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise InputError(f"a metric takes logits shaped [batch, pos, vocab], got {shape}")


def _at(logits: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``[batch, vocab]``: each prompt's logits at its position (a view for one shared position)."""
    b = logits.shape[0]
    if pos.numel() == 1:
        return logits[:, int(pos)]
    p = _per_prompt(pos, b, "pos").to(logits.device)
    return logits[torch.arange(b, device=logits.device), p]


def _pick(rows: torch.Tensor, ids: torch.Tensor, what: str) -> torch.Tensor:
    """``rows[i, ids_i]`` for ``rows`` [batch, vocab]."""
    idx = _per_prompt(ids, rows.shape[0], what).to(rows.device)
    return rows.gather(1, idx[:, None])[:, 0]


def _positions(pos: torch.Tensor) -> tuple[int, ...]:
    return tuple(sorted({int(p) for p in pos.tolist()}))


class _AtPositions:
    """A metric that reads the logits at ``pos`` (one position, or one per prompt)."""

    def __init__(self, answer_ids: Ids, pos: Pos = -1):
        self.answer_ids = _ids(answer_ids, "answer_ids")
        self.pos = _ids(pos, "pos")

    @property
    def positions(self) -> tuple[int, ...]:
        """The sequence positions this metric reads (see the module docstring)."""
        return _positions(self.pos)

    def _index_runs(self, positions: Sequence[int], n_pos: int, b: int) -> list[int]:
        """Each prompt's read position as an index into ``positions`` (the positions a batched
        call's logits hold, see :meth:`LogitDiff.batched`)."""
        index = {int(q): i for i, q in enumerate(positions)}
        try:
            return [index[int(q) % n_pos] for q in _per_prompt(self.pos, b, "pos").tolist()]
        except KeyError as err:
            raise InputError(f"the metric reads position {err} that was not given") from None

    def _at_runs(self, logits: torch.Tensor, positions: Sequence[int], n_pos: int) -> torch.Tensor:
        """``[runs, batch, vocab]``: each prompt's logits at its position, from ``logits``
        ``[runs, batch, len(positions), vocab]`` (a view when every prompt reads one position)."""
        at = self._index_runs(positions, n_pos, int(logits.shape[1]))
        if len(set(at)) == 1:
            return logits[:, :, at[0]]
        return logits[:, torch.arange(len(at)), torch.tensor(at)]

    def _pick_runs(self, logits: torch.Tensor, at: torch.Tensor, ids: torch.Tensor,
                   what: str) -> torch.Tensor:
        """``[runs, batch]``: ``logits[r, i, at_i, ids_i]`` (``at``: :meth:`_index_runs`)."""
        b = int(logits.shape[1])
        idx = _per_prompt(ids, b, what).to(logits.device)
        return logits[:, torch.arange(b, device=logits.device), at, idx]


class LogitDiff(_AtPositions):
    """Mean over prompts of ``logit[answer] - logit[wrong]`` at ``pos`` (see
    :func:`logit_diff_metric`)."""

    def __init__(self, answer_ids: Ids, wrong_ids: Ids, pos: Pos = -1):
        super().__init__(answer_ids, pos)
        self.wrong_ids = _ids(wrong_ids, "wrong_ids")

    def per_prompt(self, logits: torch.Tensor) -> torch.Tensor:
        """``[batch]``: each prompt's ``logit[answer_i] - logit[wrong_i]`` at its position (the
        metric is their mean)."""
        _check_logits(logits)
        last = _at(logits, self.pos)
        return _pick(last, self.answer_ids, "answer_ids") - _pick(last, self.wrong_ids, "wrong_ids")

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return self.per_prompt(logits).mean()

    def batched(self, logits: torch.Tensor, positions: Sequence[int], n_pos: int) -> torch.Tensor:
        """``[runs]``: the metric of each run in ``logits`` ``[runs, batch, len(positions),
        vocab]`` (each run's logits at the absolute ``positions`` of ``n_pos``, which must hold
        the ones it reads); equal to calling it on each run's logits."""
        b = int(logits.shape[1])
        at = torch.tensor(self._index_runs(positions, n_pos, b), device=logits.device)
        answer = self._pick_runs(logits, at, self.answer_ids, "answer_ids")
        return (answer - self._pick_runs(logits, at, self.wrong_ids, "wrong_ids")).mean(dim=1)

    def __repr__(self) -> str:
        return (
            f"logit_diff_metric(answer_ids={self.answer_ids.tolist()}, "
            f"wrong_ids={self.wrong_ids.tolist()}, pos={self.pos.tolist()})"
        )


class AnswerProb(_AtPositions):
    """Mean over prompts of the softmax probability of the answer at ``pos``."""

    def per_prompt(self, logits: torch.Tensor) -> torch.Tensor:
        """``[batch]``: each prompt's probability of its answer (the metric is their mean)."""
        _check_logits(logits)
        logprobs = _at(logits, self.pos).float().log_softmax(dim=-1)
        return _pick(logprobs, self.answer_ids, "answer_ids").exp()

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return self.per_prompt(logits).mean()

    def batched(self, logits: torch.Tensor, positions: Sequence[int], n_pos: int) -> torch.Tensor:
        """``[runs]``: the metric of each run (see :meth:`LogitDiff.batched`)."""
        logprobs = self._at_runs(logits, positions, n_pos).float().log_softmax(dim=-1)
        idx = _per_prompt(self.answer_ids, int(logprobs.shape[1]), "answer_ids").to(logprobs.device)
        picked = logprobs.gather(2, idx[None, :, None].expand(logprobs.shape[0], -1, 1))[..., 0]
        return picked.exp().mean(dim=1)

    def __repr__(self) -> str:
        return f"answer_prob_metric(answer_ids={self.answer_ids.tolist()}, pos={self.pos.tolist()})"


class Normalized:
    """``(metric(logits) - corrupted) / (clean - corrupted)``."""

    def __init__(self, metric: Metric, clean_value: float, corrupted_value: float):
        clean, corrupted = float(clean_value), float(corrupted_value)
        if not clean == clean or not corrupted == corrupted:
            raise InputError("the clean and corrupted metric values must be numbers, got NaN")
        if clean == corrupted:
            raise InputError(
                "the metric has no range: the prompts give the same value "
                f"({clean:.4g} on both the clean and the corrupted prompt)",
                details={"clean_value": clean, "corrupted_value": corrupted},
            )
        self.metric = metric
        self.clean_value = clean
        self.corrupted_value = corrupted

    @property
    def positions(self) -> tuple[int, ...] | None:
        """The positions the wrapped metric reads, if it says (see the module docstring)."""
        return getattr(self.metric, "positions", None)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        value = torch.as_tensor(self.metric(logits))
        return (value - self.corrupted_value) / (self.clean_value - self.corrupted_value)

    @property
    def batched(self) -> Callable[..., torch.Tensor] | None:
        """The wrapped metric's :meth:`LogitDiff.batched`, rescaled; None when it has none."""
        inner = batched_form(self.metric)
        if inner is None:
            return None
        scale, low = self.clean_value - self.corrupted_value, self.corrupted_value
        return lambda logits, positions, n_pos: (inner(logits, positions, n_pos) - low) / scale

    def per_prompt(self, logits: torch.Tensor) -> torch.Tensor:
        """``[batch]``: each prompt's term of the wrapped metric, rescaled by the same (dataset)
        clean and corrupted values, so the metric is their mean. Needs a wrapped metric with
        ``per_prompt`` (the metrics here)."""
        inner = getattr(self.metric, "per_prompt", None)
        if inner is None:
            raise InputError(f"{self.metric!r} has no per-prompt values (no per_prompt method)")
        return (inner(logits) - self.corrupted_value) / (self.clean_value - self.corrupted_value)

    def __repr__(self) -> str:
        return (
            f"normalized_metric({self.metric!r}, clean_value={self.clean_value:.6g}, "
            f"corrupted_value={self.corrupted_value:.6g})"
        )


def batched_form(metric: Any) -> Callable[..., torch.Tensor] | None:
    """``metric.batched`` for the metrics here (``(logits [runs, batch, k, vocab], positions,
    n_pos) -> [runs]``, one value per run at once), None for any other callable: the patching
    engine then calls the metric once per run."""
    if isinstance(metric, (LogitDiff, AnswerProb, Normalized)):
        return metric.batched
    return None


def logit_diff_metric(answer_ids: Ids, wrong_ids: Ids, pos: Pos = -1) -> LogitDiff:
    """A metric: the mean over prompts of ``logits[i, pos, answer_i] - logits[i, pos, wrong_i]``.

    Args:
        answer_ids: the correct next token: one id for every prompt, or one per prompt.
        wrong_ids: the wrong (e.g. the corrupted prompt's) answer, likewise.
        pos: the position read (default the last), one for all prompts or one per prompt.

    Returns:
        A callable ``logits [batch, pos, vocab] -> 0-d tensor``.
    """
    return LogitDiff(answer_ids, wrong_ids, pos)


def answer_prob_metric(answer_ids: Ids, pos: Pos = -1) -> AnswerProb:
    """A metric: the mean over prompts of the probability of ``answer_ids`` at ``pos`` (default:
    the last position). Returns a callable ``logits [batch, pos, vocab] -> 0-d tensor``."""
    return AnswerProb(answer_ids, pos)


def normalized_metric(metric: Metric, clean_value: Any, corrupted_value: Any) -> Normalized:
    """Rescale ``metric`` so the corrupted run scores 0 and the clean run 1.

    Raises:
        InputError: "the metric has no range: the prompts give the same value" when
            ``clean_value == corrupted_value``.
    """
    return Normalized(metric, float(torch.as_tensor(clean_value)), float(torch.as_tensor(corrupted_value)))
