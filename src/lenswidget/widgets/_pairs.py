"""The prompt pairs of a :class:`~lenswidget.widgets.patching.PatchingHeatmap`: one clean/corrupted
pair, or a dataset of them (e.g. TransformerLens's 8 IOI pairs), checked and tokenized.

``clean`` and ``corrupted`` are a string each (one pair) or lists of strings (pair ``i`` is
``clean[i]``, ``corrupted[i]``); ``answer`` and ``wrong`` are one token string for every pair, or a
list with one per pair. Every problem is an :class:`~lenswidget.errors.InputError` that says which
pair and shows both tokenizations where lengths differ. The two prompts of a pair must tokenize
to the same length (patching is position by position), and so must all pairs: positions are the
heatmap's columns, shared by every pair, so prompts are not padded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
import traitlets

from ..errors import InputError
if TYPE_CHECKING:  # widgets check the lens through base.LensLike: no import circle with session.py
    from ..session import Lens


class _TextsMeta(type):
    def __instancecheck__(cls, value: Any) -> bool:
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


#: a request argument type (widgets/base.py ``Request``): a string, or a list of strings
Texts = _TextsMeta("str or list of str", (), {})


@dataclass(frozen=True)
class PromptPairs:
    """``n`` checked prompt pairs.

    Attributes:
        clean, corrupted: the prompts, ``n`` each.
        answers, wrongs: the answer and wrong-answer token strings, one per pair (``n`` each).
        clean_tokens, corrupted_tokens: LongTensor ``[n, pos]`` on the lens's device.
        answer_ids, wrong_ids: ``n`` token ids each.
        clean_str, corrupted_str: ``[n][pos]`` token strings.
        box: the texts of the view's Apply box (``clean``, ``corrupted``, ``answer``, ``wrong``):
            one line per pair; an answer given once for all pairs is shown once.
    """

    clean: list[str]
    corrupted: list[str]
    answers: list[str]
    wrongs: list[str]
    clean_tokens: torch.Tensor
    corrupted_tokens: torch.Tensor
    answer_ids: list[int]
    wrong_ids: list[int]
    clean_str: list[list[str]]
    corrupted_str: list[list[str]]
    box: dict[str, str]

    @property
    def n(self) -> int:
        return len(self.clean)


def _prompts(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        if not value:
            raise InputError(f"The list of {what} prompts is empty: give at least one prompt pair.")
        bad = [i for i, v in enumerate(value) if not isinstance(v, str)]
        if bad:
            raise InputError(f"Every {what} prompt must be text; item {bad[0]} is {type(value[bad[0]]).__name__}.")
        return list(value)
    raise InputError(f"The {what} prompt must be text or a list of texts, got {type(value).__name__}.")


def _answers(value: Any, n: int, what: str) -> list[str]:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [value] * n  # type: ignore[list-item]
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return list(value) * n
        if len(value) != n:
            raise InputError(
                f"{len(value)} {what}s for {n} prompt pair{'s' if n != 1 else ''}: give one {what} for all "
                f"pairs, or one per pair.",
                details={"entries": len(value), "pairs": n},
            )
        return list(value)
    raise InputError(f"The {what} must be a token string or a list of them, got {type(value).__name__}.")


def _box(value: Any) -> str:
    return "\n".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def parse_pairs(lens: Lens, clean: Any, corrupted: Any, answer: Any, wrong: Any) -> PromptPairs:
    """Check and tokenize the inputs; see the module docstring. Raises :class:`InputError`."""
    cleans = _prompts(clean, "clean")
    corrupts = _prompts(corrupted, "corrupted")
    if len(cleans) != len(corrupts):
        raise InputError(
            f"{len(cleans)} clean prompts but {len(corrupts)} corrupted prompts: patching pairs them one to one, "
            "so give as many of each.",
            details={"clean_count": len(cleans), "corrupted_count": len(corrupts)},
        )
    n = len(cleans)
    multi = n > 1
    answers = _answers(answer, n, "answer")
    wrongs = _answers(wrong, n, "wrong answer")
    name = (lambda i: f" of pair {i + 1}") if multi else (lambda i: "")
    rows_c, rows_x, str_c, str_x, ids_a, ids_w = [], [], [], [], [], []
    for i, (c, x) in enumerate(zip(cleans, corrupts)):
        ct = lens.tokenize(c, what=f"clean prompt{name(i)}")
        xt = lens.tokenize(x, what=f"corrupted prompt{name(i)}")
        cs, xs = lens.str_tokens(ct), lens.str_tokens(xt)
        if ct.shape != xt.shape:
            which = f"In pair {i + 1}, the" if multi else "The"
            raise InputError(
                f"{which} clean prompt is {ct.shape[1]} tokens and the corrupted prompt {xt.shape[1]}: "
                f"patching needs the same number of tokens, position by position. Clean: {cs!r}; corrupted: {xs!r}.",
                details={"pair": i, "clean_tokens": cs, "corrupted_tokens": xs},
            )
        a = lens.token_id(answers[i], what=f"answer{name(i)}")
        w = lens.token_id(wrongs[i], what=f"wrong answer{name(i)}")
        if a == w:
            raise InputError(
                f"The answer and the wrong answer{name(i)} are the same token: their logit difference is always 0."
            )
        rows_c.append(ct[0])
        rows_x.append(xt[0])
        str_c.append(cs)
        str_x.append(xs)
        ids_a.append(a)
        ids_w.append(w)
    lengths = [int(r.shape[0]) for r in rows_c]
    if len(set(lengths)) > 1:
        j = next(i for i, m in enumerate(lengths) if m != lengths[0])
        raise InputError(
            f"The prompt pairs have different token counts: pair 1 is {lengths[0]} tokens, pair {j + 1} is "
            f"{lengths[j]}. Every pair of a dataset needs the same number of tokens (the heatmap's positions are "
            f"shared by all pairs; prompts are not padded). Pair 1: {str_c[0]!r}; pair {j + 1}: {str_c[j]!r}.",
            details={"lengths": lengths, "pair": j, "first_tokens": str_c[0], "pair_tokens": str_c[j]},
        )
    clean_t, corrupted_t = torch.stack(rows_c), torch.stack(rows_x)
    if torch.equal(clean_t, corrupted_t):
        what = "every pair's clean and corrupted prompts are" if multi else "the clean and corrupted prompts are"
        raise InputError(
            f"{what[0].upper()}{what[1:]} identical: patching one into the other changes nothing and the metric "
            "has no range. Change a word in the corrupted prompt."
        )
    return PromptPairs(
        clean=cleans, corrupted=corrupts, answers=[str(a) for a in answers], wrongs=[str(w) for w in wrongs],
        clean_tokens=clean_t, corrupted_tokens=corrupted_t, answer_ids=ids_a, wrong_ids=ids_w,
        clean_str=str_c, corrupted_str=str_x,
        box={"clean": _box(clean), "corrupted": _box(corrupted), "answer": _box(answer), "wrong": _box(wrong)},
    )


def pair_rows(pairs: PromptPairs, clean_values: Sequence[float], corrupted_values: Sequence[float]) -> list[dict]:
    """The ``pairs`` trait: one JSON row per pair, with its own logit difference on both runs."""
    return [
        {"clean": pairs.clean[i], "corrupted": pairs.corrupted[i], "answer": pairs.answers[i],
         "wrong": pairs.wrongs[i], "clean_logit_diff": float(clean_values[i]),
         "corrupted_logit_diff": float(corrupted_values[i])}
        for i in range(pairs.n)
    ]


class PairTraits(traitlets.HasTraits):
    """The synced traits every view over clean/corrupted prompt pairs shares (the patching heatmap
    and the circuit graph): the prompts and answers as given, each side's token strings, and the
    model's shape."""

    clean_prompt = traitlets.Unicode("").tag(sync=True)
    corrupted_prompt = traitlets.Unicode("").tag(sync=True)
    answer = traitlets.Unicode("").tag(sync=True)
    wrong = traitlets.Unicode("").tag(sync=True)
    clean_tokens = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    corrupted_tokens = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    n_layers = traitlets.Int(0).tag(sync=True)
    n_heads = traitlets.Int(0).tag(sync=True)
