"""The embedded toy model: a 2-layer attention-only transformer with a word-level tokenizer.

Everything it needs ships inside the package, in ``lenswidget/models/toy/``:

- ``tokenizer.json``: a ``tokenizers`` WordLevel tokenizer (lower-casing normalizer, whitespace
  pre-tokenizer) over a few hundred common English words, punctuation and the special tokens
  ``<bos> <eos> <pad> <unk>``;
- ``config.json``: the ``TransformerBridgeConfig`` fields (rebuilt with
  ``TransformerBridgeConfig.from_dict``) plus a ``"lenswidget"`` section with what training used
  and the head scores it reached;
- ``model.safetensors``: the bridge's own ``state_dict`` in float32.

``scripts/train_toy.py`` writes these files; :func:`toy` reads them.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ModelLoadError

if TYPE_CHECKING:  # pragma: no cover
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedTokenizerFast

#: Folder of the shipped toy model files.
TOY_DIR = Path(__file__).parent / "toy"
TOY_NAME = "lenswidget-toy"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

BOS, EOS, PAD, UNK = "<bos>", "<eos>", "<pad>", "<unk>"
#: Special tokens, in id order (ids 0..3).
SPECIAL_TOKENS = (BOS, EOS, PAD, UNK)
#: Punctuation tokens that follow the special tokens (so prompts with punctuation tokenize).
PUNCTUATION = (".", ",", "?", "!", "'")

# Config fields that are not JSON values (or describe this machine, not the model).
_CONFIG_SKIP = {"dtype", "device", "n_params"}


def build_word_tokenizer(words: list[str] | tuple[str, ...], name_or_path: str = TOY_NAME) -> "PreTrainedTokenizerFast":
    """A word-level fast tokenizer over ``SPECIAL_TOKENS + PUNCTUATION + words`` (ids in that
    order): lower-cases its input, splits on whitespace and punctuation, maps unknown words to
    ``<unk>``. Used by ``scripts/train_toy.py`` to build the shipped ``tokenizer.json``."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    vocab: dict[str, int] = {}
    for tok in (*SPECIAL_TOKENS, *PUNCTUATION, *words):
        if tok in vocab:
            raise ValueError(f"duplicate token {tok!r} in the toy vocabulary")
        vocab[tok] = len(vocab)
    tk = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return _wrap(tk, name_or_path)


def _wrap(tk: Any, name_or_path: str) -> "PreTrainedTokenizerFast":
    from transformers import PreTrainedTokenizerFast

    # TransformerLens reads tokenizer.name_or_path (without it: KeyError 'name_or_path'), and
    # unless add_bos_token is True it reloads the tokenizer with
    # AutoTokenizer.from_pretrained(name_or_path, add_bos_token=True): a Hub request for
    # "lenswidget-toy" that retries for ~25 s offline and then fails. With add_bos_token=True the
    # tokenizer prepends <bos> itself and TransformerLens uses it as it is.
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        add_bos_token=True,
        name_or_path=name_or_path,
    )


def toy_tokenizer() -> "PreTrainedTokenizerFast":
    """A fresh copy of the toy model's word-level tokenizer (``len(tok)`` ids; ``<bos>`` is id 0).

    Each call builds a new object, because TransformerLens configures the tokenizer it is given
    in place. Raises :class:`ModelLoadError` if the shipped file is missing."""
    from tokenizers import Tokenizer

    path = TOY_DIR / TOKENIZER_FILE
    if not path.is_file():
        raise ModelLoadError(
            f"The toy tokenizer file {path} is missing. Reinstall lenswidget, or rebuild it with "
            "`python scripts/train_toy.py`."
        )
    return _wrap(Tokenizer.from_file(str(path)), TOY_NAME)


@functools.lru_cache(maxsize=1)
def toy_config_dict() -> dict[str, Any]:
    """The shipped ``config.json`` as a dict (the bridge config fields plus a ``"lenswidget"``
    section with training facts: ``word_ids`` [first, last], ``repeat_lengths`` [min, max],
    measured ``scores``). Cached; do not mutate."""
    path = TOY_DIR / CONFIG_FILE
    if not path.is_file():
        raise ModelLoadError(
            f"The toy model config {path} is missing. Reinstall lenswidget, or rebuild the toy model "
            "with `python scripts/train_toy.py`."
        )
    return json.loads(path.read_text())


def config_to_json(cfg: Any) -> dict[str, Any]:
    """The JSON-able fields of a ``TransformerBridgeConfig`` (what ``from_dict`` rebuilds)."""
    out: dict[str, Any] = {}
    for key, value in cfg.to_dict().items():
        if key in _CONFIG_SKIP or key.startswith("_"):
            continue
        if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
            value = value.item()
        try:
            json.dumps(value)
        except TypeError:
            continue
        out[key] = value
    return out


def toy_bridge_config() -> Any:
    """The toy model's ``TransformerBridgeConfig``, rebuilt from the shipped ``config.json``."""
    from transformer_lens.config import TransformerBridgeConfig

    fields = {k: v for k, v in toy_config_dict().items() if k != "lenswidget"}
    fields["device"] = "cpu"
    fields["dtype"] = torch.float32
    return TransformerBridgeConfig.from_dict(fields)


def toy() -> "TransformerBridge":
    """The embedded toy model: a 2-layer attention-only ``TransformerBridge`` with rotary
    positions and a word-level tokenizer, trained by ``scripts/train_toy.py`` on random word
    sequences whose second half repeats the first.

    It shows the textbook induction circuit: a previous-token head in layer 0 and induction heads
    in layer 1 (in the shipped weights L0H3, score ~0.8, and all four layer-1 heads, 0.7-0.96; see
    ``toy_config_dict()["lenswidget"]["scores"]`` or ``python -m lenswidget.models toy``).
    Tokens are whole lower-case words: ``model.to_tokens("the cat sat on the mat")`` is ``<bos>``
    plus one token per word; words outside the vocabulary become ``<unk>``.

    Returns a new model each call, on the CPU, in float32 and in eval mode. Loading takes ~0.1 s
    once TransformerLens is imported and does not touch the global random state. Raises :class:`ModelLoadError`
    if the shipped files are missing or do not match.
    """
    from safetensors.torch import load_file
    from transformer_lens.model_bridge import TransformerBridge

    cfg = toy_bridge_config()
    tokenizer = toy_tokenizer()
    weights = TOY_DIR / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelLoadError(
            f"The toy model weights {weights} are missing. Reinstall lenswidget, or rebuild them with "
            "`python scripts/train_toy.py`."
        )
    # cfg.seed is set, so boot_native initialises inside torch.random.fork_rng: the caller's
    # random state is left alone. The random initial weights are overwritten just below.
    bridge = TransformerBridge.boot_native(cfg, tokenizer=tokenizer, device="cpu", model_name=TOY_NAME)
    try:
        bridge.load_state_dict(load_file(str(weights)), strict=True)
    except RuntimeError as err:
        raise ModelLoadError(f"The shipped toy weights do not fit the toy config: {err}") from err
    return bridge.eval()


def toy_word_ids() -> torch.Tensor:
    """Ids of the plain words in the toy vocabulary (no special tokens, no punctuation), as a
    LongTensor [n_words]."""
    first, last = toy_config_dict()["lenswidget"]["word_ids"]
    return torch.arange(int(first), int(last) + 1)


def toy_repeated_tokens(n_repeat: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """Repeated random words for the toy model: ``<bos>``, ``n_repeat`` distinct random words,
    then the same words again.

    Returns a LongTensor [batch, 1 + 2 * n_repeat] of toy token ids; each row has its own words,
    drawn without replacement from the toy vocabulary's words with a generator seeded by
    ``seed`` (the global random state is not used). Feed it to ``toy()`` directly; on the
    repeated half, the layer-1 induction heads attend to the token after the earlier copy of the
    current token. Raises ``ValueError`` if ``n_repeat < 1``, ``batch < 1`` or the sequence does
    not fit the model's context.
    """
    info = toy_config_dict()
    n_ctx = int(info["n_ctx"])
    if isinstance(n_repeat, bool) or not isinstance(n_repeat, int) or n_repeat < 1:
        raise ValueError(f"n_repeat must be a positive integer, got {n_repeat!r}.")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}.")
    if 1 + 2 * n_repeat > n_ctx:
        raise ValueError(
            f"n_repeat={n_repeat} gives {1 + 2 * n_repeat} tokens, more than the toy model's context "
            f"of {n_ctx}; use n_repeat <= {(n_ctx - 1) // 2}."
        )
    words = toy_word_ids()
    gen = torch.Generator().manual_seed(int(seed))
    rows = torch.stack([words[torch.randperm(len(words), generator=gen)[:n_repeat]] for _ in range(batch)])
    bos = torch.full((batch, 1), SPECIAL_TOKENS.index(BOS), dtype=torch.long)
    return torch.cat([bos, rows, rows], dim=1)
