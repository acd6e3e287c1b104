"""Patching metrics on hand-made logits."""

from __future__ import annotations

import pytest
import torch

from lenswidget.analysis import answer_prob_metric, logit_diff_metric, normalized_metric
from lenswidget.errors import InputError
from lenswidget.analysis.metrics import batched_form


def logits_with(values: dict[tuple[int, int, int], float], shape=(2, 3, 5)) -> torch.Tensor:
    out = torch.zeros(shape)
    for idx, v in values.items():
        out[idx] = v
    return out


def test_logit_diff_is_the_mean_over_prompts_at_the_last_position():
    logits = logits_with({(0, 2, 1): 3.0, (0, 2, 2): 1.0, (1, 2, 1): 0.5, (1, 2, 2): 2.5, (0, 1, 1): 99.0})
    metric = logit_diff_metric(1, 2)
    value = metric(logits)
    assert value.ndim == 0
    assert value.item() == pytest.approx(((3 - 1) + (0.5 - 2.5)) / 2)


def test_logit_diff_per_prompt_answers_and_position():
    logits = logits_with({(0, 1, 1): 4.0, (1, 1, 3): 2.0, (1, 1, 4): 1.0})
    metric = logit_diff_metric([1, 3], [0, 4], pos=1)
    assert metric(logits).item() == pytest.approx(((4 - 0) + (2 - 1)) / 2)
    # one position per prompt
    metric = logit_diff_metric([1, 3], [0, 4], pos=[1, 2])
    assert metric(logits).item() == pytest.approx(((4 - 0) + (0 - 0)) / 2)


def test_logit_diff_is_differentiable():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    logit_diff_metric(1, 2)(logits).backward()
    assert logits.grad is not None and logits.grad[:, -1].abs().sum() > 0


def test_answer_prob():
    logits = torch.zeros(1, 2, 4)
    logits[0, -1, 2] = torch.log(torch.tensor(3.0))  # probs 3/6 for id 2, 1/6 for the others
    assert answer_prob_metric(2)(logits).item() == pytest.approx(0.5)
    assert answer_prob_metric([0])(logits).item() == pytest.approx(1 / 6)


def test_normalized_metric_maps_corrupted_to_0_and_clean_to_1():
    base = logit_diff_metric(1, 2)
    clean = logits_with({(0, 2, 1): 5.0, (1, 2, 1): 5.0})
    corrupted = logits_with({(0, 2, 2): 1.0, (1, 2, 2): 1.0})
    norm = normalized_metric(base, base(clean), base(corrupted))
    assert norm(clean).item() == pytest.approx(1.0)
    assert norm(corrupted).item() == pytest.approx(0.0)
    half = (clean + corrupted) / 2
    assert norm(half).item() == pytest.approx(0.5)


def test_normalized_metric_without_range_is_an_input_error():
    with pytest.raises(InputError, match="the metric has no range: the prompts give the same value"):
        normalized_metric(logit_diff_metric(1, 2), 1.5, 1.5)
    with pytest.raises(InputError, match="no range"):
        normalized_metric(logit_diff_metric(1, 2), torch.tensor(0.0), torch.tensor(0.0))


def test_bad_metric_inputs_are_input_errors():
    with pytest.raises(InputError, match="one per prompt"):
        logit_diff_metric([1, 2, 3], 0)(torch.zeros(2, 3, 5))
    with pytest.raises(InputError, match=r"\[batch, pos, vocab\]"):
        logit_diff_metric(1, 2)(torch.zeros(3, 5))
    with pytest.raises(InputError, match="token ids"):
        logit_diff_metric(1.5, 2)
    with pytest.raises(InputError, match="empty"):
        logit_diff_metric([], 2)


def test_metrics_have_a_readable_repr():
    assert "logit_diff_metric" in repr(logit_diff_metric(1, 2))
    assert "answer_prob_metric" in repr(answer_prob_metric(3))
    assert "normalized_metric" in repr(normalized_metric(logit_diff_metric(1, 2), 1.0, 0.0))


@pytest.mark.parametrize("make", [
    lambda: logit_diff_metric([3, 1, 4], [2, 7, 0], pos=[-1, 2, 4]),
    lambda: logit_diff_metric(5, 6),
    lambda: answer_prob_metric([3, 1, 4], pos=[1, -1, 1]),
    lambda: normalized_metric(logit_diff_metric([3, 1, 4], 2, pos=[4, 2, 2]), 1.5, -0.25),
])
def test_batched_equals_one_call_per_run(make):
    """``metric.batched`` (the patching engine's: every run at once, from the read positions only)
    gives what calling the metric on each run's full logits gives."""
    metric = make()
    runs, batch, n_pos, vocab = 5, 3, 6, 11
    logits = torch.randn(runs, batch, n_pos, vocab, generator=torch.Generator().manual_seed(0)) * 3
    positions = sorted({q % n_pos for q in metric.positions})
    got = batched_form(metric)(logits[:, :, positions], positions, n_pos)
    want = torch.stack([metric(logits[r]) for r in range(runs)])
    assert got.shape == (runs,)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert (want - want.mean()).abs().max() > 0.1  # the runs differ: a mix-up would show


def test_only_the_metrics_here_have_a_batched_form():
    assert batched_form(lambda logits: logits[:, -1, 0].mean()) is None
    assert batched_form(normalized_metric(lambda logits: logits[:, -1, 0].mean(), 1.0, 0.0)) is None
