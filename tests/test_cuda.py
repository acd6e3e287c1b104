"""The same numbers on CUDA: analysis equalities and the attention grid's protocol on the GPU.

Skipped (with the reason) where ``torch.cuda.is_available()`` is false. Each test runs the toy
model on the GPU and compares with the CPU run of the same weights, so a tensor left on the CPU
(or moved there too early) fails here as a device error or a wrong number.
"""

from __future__ import annotations

import copy

import pytest
import torch

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available() is False)"
)

PROMPT = "the cat sat on the mat and the cat sat on the mat"


@pytest.fixture(scope="module")
def lenses(toy_model):
    from lenswidget import Lens

    gpu = copy.deepcopy(toy_model).to("cuda")
    return Lens(toy_model), Lens(gpu)


def test_lens_follows_the_model_device(lenses):
    cpu, gpu = lenses
    assert gpu.device.type == "cuda" and cpu.device.type == "cpu"
    assert gpu.tokenize(PROMPT).device.type == "cuda"


def test_head_scores_and_stream_equal_cpu(lenses):
    from lenswidget.analysis import head_pattern, head_scores, stream_attention

    cpu, gpu = lenses
    ref = head_scores(cpu.model, cpu.tokenize(PROMPT))
    on_gpu = head_scores(gpu.model, gpu.tokenize(PROMPT))
    torch.testing.assert_close(on_gpu.values.cpu(), ref.values, atol=1e-3, rtol=0)
    streamed = stream_attention(gpu.model, gpu.tokenize(PROMPT), thumb=4, keep_patterns_bytes=0)
    torch.testing.assert_close(streamed.values, ref.values, atol=1e-3, rtol=0)
    assert streamed.block_inputs is not None
    torch.testing.assert_close(head_pattern(gpu.model, streamed, 1, 2), ref.patterns[1, 2], atol=1e-3, rtol=0)


def test_ablation_and_logit_lens_equal_cpu(lenses):
    from lenswidget.analysis import ablate_heads, logit_lens

    cpu, gpu = lenses
    a = ablate_heads(cpu.model, cpu.tokenize(PROMPT), [(1, 0)], mode="mean")
    b = ablate_heads(gpu.model, gpu.tokenize(PROMPT), [(1, 0)], mode="mean")
    torch.testing.assert_close(b.delta_logprob.cpu(), a.delta_logprob, atol=1e-3, rtol=0)
    assert float(a.delta_logprob.abs().max()) > 0.05  # the ablation changes something
    la = logit_lens(cpu.model, cpu.tokenize(PROMPT))
    lb = logit_lens(gpu.model, gpu.tokenize(PROMPT))
    torch.testing.assert_close(lb.top_probs.cpu(), la.top_probs, atol=1e-3, rtol=0)


def test_attention_grid_protocol_on_cuda(lenses):
    from lenswidget.encode import decode_tensor, decode_tril
    from lenswidget.widgets import AttentionGrid

    from .wire import Wire

    cpu, gpu = lenses
    g_cpu, g_gpu = AttentionGrid(cpu, PROMPT), AttentionGrid(gpu, PROMPT)
    torch.testing.assert_close(
        decode_tril(g_gpu.patterns, g_gpu.patterns_meta), decode_tril(g_cpu.patterns, g_cpu.patterns_meta),
        atol=2e-3, rtol=0,
    )
    torch.testing.assert_close(
        decode_tensor(g_gpu.scores, g_gpu.scores_meta), decode_tensor(g_cpu.scores, g_cpu.scores_meta),
        atol=1e-3, rtol=0,
    )
    wire = Wire(g_gpu)
    reply = wire.request("ablate", {"layer": 1, "head": 0, "mode": "zero"})
    assert reply["ok"], reply
    expected = g_cpu.ablate(1, 0, "zero").to_json(cpu.model)
    assert reply["result"]["delta_logprob"] == pytest.approx(expected["delta_logprob"], abs=1e-3)
    assert wire.request("pattern", {"layer": 0, "head": 1})["ok"]
    assert not wire.request("ablate", {"layer": 7, "head": 0})["ok"]
    assert wire.request("run", {"prompt": "the dog ran"})["ok"]
