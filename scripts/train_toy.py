"""Train lenswidget's embedded toy model and write it into ``src/lenswidget/models/toy/``.

    .venv/bin/python scripts/train_toy.py            # ~85 s of CPU time (2-2.5 min wall on a busy 2-core box)
    .venv/bin/python scripts/train_toy.py --out /tmp/toy --steps 500   # quick experiment

The model is a 2-layer attention-only TransformerBridge (TransformerLens's native model) with
rotary positions and a word-level tokenizer over a few hundred common English words. It is
trained on random word sequences whose second half repeats the first (``<bos> w1..wn w1..wn``),
with the repeat length ``n`` drawn per batch from ``--repeat-min..--repeat-max``. That task is
solved by the textbook induction circuit: a previous-token head in layer 0 and induction heads in
layer 1. (With learned absolute positions such a model finds positional shortcuts instead; with
rotary it does not.)

Training has two phases:
1. loss on the repeated half only, until the induction circuit has formed;
2. the same plus ``--first-half-weight`` times the loss on the first half, which teaches the model
   to predict the uniform distribution over words where nothing can be predicted (instead of being
   confidently wrong there), so logit-lens and loss views look sensible.

A small learning rate matters: with lr 1e-2, two of three seeds grew a "shifted" circuit instead
(layer-0 heads that look 2 and 3 tokens back; layer-1 heads attend 3 past the earlier copy and read
the answer through layer 0's values), which predicts just as well but is not the textbook one and
scores ~0 on the induction detector. At 3e-3 seeds 0, 2 and 3 grew the textbook circuit (seed 1
was growing it when that trial was stopped early).
Training is single-threaded and seeded, so a rerun gives the same model (same losses and scores).

The loop trains the plain ``NativeModel`` (no hooks: ~3x faster) and wraps it in a
``TransformerBridge`` at the end; the bridge's ``state_dict`` is what ships. The script measures
the head scores through the bridge, and refuses to write the files unless the circuit is there
(previous-token score >= 0.5 in layer 0 and induction score >= 0.7 in layer 1 at repeat lengths
4-32; at 40 the previous-token score dips to ~0.5 and is only reported).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lenswidget.models._toy import (  # noqa: E402
    CONFIG_FILE,
    PUNCTUATION,
    SPECIAL_TOKENS,
    TOKENIZER_FILE,
    TOY_DIR,
    TOY_NAME,
    UNK,
    WEIGHTS_FILE,
    build_word_tokenizer,
    config_to_json,
)

# A few hundred common lower-case English words (after the special tokens and punctuation, in
# this order, they are the toy vocabulary). Edit, then retrain.
WORDS = """
the of and to a in is it you that he was for on are with as i his they be at one have this from
or had by hot word but what some we can out other were all there when up use your how said an each
she which do their time if will way about many then them write would like so these her long make
thing see him two has look more day could go come did number sound no most people my over know
water than call first who may down side been now find any new work part take get place made live
where after back little only round man year came show every good me give our under name very
through just form sentence great think say help low line differ turn cause much mean before move
right boy old too same tell does set three want air well also play small end put home read hand
port large spell add even land here must big high such follow act why ask men change went light
kind off need house picture try us again animal point mother world near build self earth father
head stand own page should country found answer school grow study still learn plant cover food sun
four between state keep eye never last let thought city tree cross farm hard start might story saw
far sea draw left late run while press close night real life few north open seem together next
white children begin got walk example ease paper group always music those both mark often letter
until mile river car feet care second book carry took science eat room friend began idea fish
mountain stop once base hear horse cut sure watch color face wood main enough plain girl usual
young ready above ever red list though feel talk bird soon body dog family direct pose leave song
measure door product black short numeral class wind question happen complete ship area half rock
order fire south problem piece told knew pass since top whole king space heard best hour better
true during hundred five remember step early hold west ground interest reach fast verb sing listen
six table travel less morning ten simple several vowel toward war lay against pattern slow center
love person money serve appear road map rain rule govern pull cold notice voice unit power town
fine certain fly fall lead cry dark machine note wait plan figure star box noun field rest correct
able pound done beauty drive stood contain front teach week final gave green quick develop ocean
warm free minute strong special mind behind clear tail produce fact street inch multiply nothing
course stay wheel full force blue object decide surface deep moon island foot system busy test
record boat common gold possible plane dry wonder laugh thousand ago ran check game shape equate
miss brought heat snow tire bring yes distant fill east paint language among cat mat sat hat bed
cup apple egg milk bread cake tea ball bag key lamp chair sky rabbit mouse bear lion queen
""".split()

#: Repeat lengths the scores are measured (and recorded) at.
CHECK_LENGTHS = (4, 8, 12, 16, 24, 32, 40)
#: Lengths that must pass (what demos use); at 40 words the previous-token head's score dips to ~0.5.
GATE_LENGTHS = (4, 8, 12, 16, 24, 32)
MIN_PREV, MIN_INDUCTION = 0.5, 0.7


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=TOY_DIR, help="output folder (default: the package's toy/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=3000, help="total optimizer steps")
    p.add_argument("--phase1-steps", type=int, default=2000, help="steps with loss on the repeated half only")
    p.add_argument("--first-half-weight", type=float, default=0.2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--n-ctx", type=int, default=128)
    p.add_argument("--repeat-min", type=int, default=4)
    p.add_argument("--repeat-max", type=int, default=40)
    p.add_argument("--force", action="store_true", help="write the files even if the circuit checks fail")
    return p.parse_args(argv)


def make_config(args: argparse.Namespace, d_vocab: int):
    from transformer_lens.config import TransformerBridgeConfig

    return TransformerBridgeConfig(
        d_model=args.d_model,
        d_head=args.d_model // args.n_heads,
        n_heads=args.n_heads,
        n_layers=2,
        n_ctx=args.n_ctx,
        d_vocab=d_vocab,
        attn_only=True,
        positional_embedding_type="rotary",
        normalization_type="LN",
        seed=args.seed,
        model_name=TOY_NAME,
        device="cpu",
    )


def repeated_batch(n: int, batch: int, first_id: int, d_vocab: int, gen: torch.Generator) -> torch.Tensor:
    """[batch, 1 + 2n]: <bos> (id 0), n random tokens from ids first_id.. (with replacement), the
    same n again."""
    words = torch.randint(first_id, d_vocab, (batch, n), generator=gen)
    return torch.cat([torch.zeros(batch, 1, dtype=torch.long), words, words], dim=1)


@torch.no_grad()
def head_scores(bridge, n: int, first_word: int, d_vocab: int, batch: int = 16) -> dict:
    """Scores through the bridge's hooks on <bos> + n distinct random words + the same again.

    previous-token score of a head: mean attention from each position q >= 1 to q - 1;
    induction score: mean attention from each repeated-half position q to q - n + 1 (the token
    after the earlier copy of the current token)."""
    gen = torch.Generator().manual_seed(1234 + n)
    words = torch.stack([torch.randperm(d_vocab - first_word, generator=gen)[:n] + first_word for _ in range(batch)])
    tokens = torch.cat([torch.zeros(batch, 1, dtype=torch.long), words, words], dim=1)
    logits, cache = bridge.run_with_cache(tokens)
    out: dict = {}
    for layer in range(bridge.cfg.n_layers):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]  # [batch, head, q, k]
        prev = pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean((0, -1))
        ind = pattern.diagonal(offset=-(n - 1), dim1=-2, dim2=-1)[..., -n:].mean((0, -1))
        out[f"L{layer}"] = {
            "previous_token": [round(v, 4) for v in prev.tolist()],
            "induction": [round(v, 4) for v in ind.tolist()],
        }
    loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    out["loss_first_half"] = round(loss[:, :n].mean().item(), 4)
    out["loss_repeated_half"] = round(loss[:, n + 1 :].mean().item(), 4)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if 1 + 2 * args.repeat_max > args.n_ctx:
        raise SystemExit(f"--repeat-max {args.repeat_max} does not fit n_ctx {args.n_ctx}")
    # One thread: on a small shared CPU, two threads were slower (and less reproducible).
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    from safetensors.torch import save_file
    from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module
    from transformer_lens.model_bridge.sources.native import NativeModel, initialize_native_model

    tokenizer = build_word_tokenizer(WORDS)
    d_vocab = len(tokenizer)
    first_word = len(SPECIAL_TOKENS) + len(PUNCTUATION)
    assert tokenizer.convert_ids_to_tokens(first_word) == WORDS[0]
    # Train on <unk>, punctuation and words, so prompts with those repeat well too.
    first_train_id = SPECIAL_TOKENS.index(UNK)
    cfg = make_config(args, d_vocab)

    model = NativeModel(cfg)
    initialize_native_model(model, cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"toy model: {n_params} parameters, vocab {d_vocab}, n_ctx {cfg.n_ctx}", flush=True)

    gen = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.0)
    warmup = 50
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / args.steps))
    )
    start = time.perf_counter()
    ema = None
    model.train()
    for step in range(args.steps):
        n = int(torch.randint(args.repeat_min, args.repeat_max + 1, (1,), generator=gen))
        tokens = repeated_batch(n, args.batch, first_train_id, d_vocab, gen)
        logits = model(tokens)
        # Positions n+1.. predict the 2nd..nth repeated word: predictable by induction.
        loss = F.cross_entropy(logits[:, n + 1 : -1].reshape(-1, d_vocab), tokens[:, n + 2 :].reshape(-1))
        if step >= args.phase1_steps and args.first_half_weight:
            first = F.cross_entropy(logits[:, : n + 1].reshape(-1, d_vocab), tokens[:, 1 : n + 2].reshape(-1))
            loss = loss + args.first_half_weight * first
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 200 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {ema:.3f}  {time.perf_counter() - start:6.1f} s", flush=True)
    train_seconds = time.perf_counter() - start
    print(f"trained in {train_seconds:.1f} s", flush=True)

    model.eval()
    bridge = build_bridge_from_module(
        model, architecture="TransformerLensNative", tl_config=cfg, tokenizer=tokenizer, model_name=TOY_NAME
    ).eval()
    scores = {n: head_scores(bridge, n, first_word, d_vocab) for n in CHECK_LENGTHS if 1 + 2 * n <= cfg.n_ctx}
    ok = True
    for n, s in scores.items():
        prev = max(s["L0"]["previous_token"])
        ind = max(s["L1"]["induction"])
        good = prev >= MIN_PREV and ind >= MIN_INDUCTION
        ok &= good or n not in GATE_LENGTHS
        print(
            f"n={n:3d}  loss first half {s['loss_first_half']:.2f}  repeated half {s['loss_repeated_half']:.3f}  "
            f"L0 prev {' '.join(f'{v:.2f}' for v in s['L0']['previous_token'])}  "
            f"L1 induction {' '.join(f'{v:.2f}' for v in s['L1']['induction'])}"
            + ("" if good else "  <-- weak" + ("" if n in GATE_LENGTHS else " (not gated)")),
            flush=True,
        )
    if not ok and not args.force:
        print("The induction circuit did not form; not writing files (try another --seed, or --force).")
        return 1

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in bridge.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt", "model": TOY_NAME})
    (out / WEIGHTS_FILE).chmod(0o644)  # safetensors writes 0600
    tokenizer.backend_tokenizer.save(str(out / TOKENIZER_FILE))
    config = config_to_json(cfg)
    config["lenswidget"] = {
        "format": 1,
        "description": "2-layer attention-only rotary transformer trained on repeated random words "
        "(scripts/train_toy.py); previous-token head in layer 0, induction heads in layer 1.",
        "word_ids": [first_word, d_vocab - 1],
        "train_ids": [first_train_id, d_vocab - 1],
        "repeat_lengths": [args.repeat_min, args.repeat_max],
        "train": {
            "seed": args.seed,
            "steps": args.steps,
            "phase1_steps": args.phase1_steps,
            "first_half_weight": args.first_half_weight,
            "batch": args.batch,
            "lr": args.lr,
            "seconds": round(train_seconds, 1),
            "torch": torch.__version__,
        },
        "n_params": n_params,
        "scores": {str(n): s for n, s in scores.items()},
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    print(f"wrote {out}: {sizes} (total {sum(sizes.values()) / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
