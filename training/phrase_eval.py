"""How well knob moves keep the phrase: `python -m glsr_train.phrase_eval MODEL --split val`.

For phrases of a split (or of folders / music21 collections with ``--melodies``), at each
fidelity asked for (0 is the model's plain decode), through the runtime's own ``Engine``
pieces (``PhraseKeeper``, the at-rest rule):

* ``rest_exact``: share of phrases played back note for note with every knob at its centre;
* ``code_nonhold``: share of the phrase's non-hold steps the plain decode of its code keeps
  (the code: the encoder's mean, or with refinement, the best of 256 codes around it);
* ``kept_at``: share of the phrase's notes (step and pitch) still played with the notes knob
  one spread down and up; ``kept_of_keepable`` the same over the notes that could stay (the
  fewer of the phrase's and the variation's counts); ``moved_share``: share of (phrase, end)
  pairs whose note count moved in the knob's direction;
* ``along``: Spearman of each attribute along its axis (25 points over -3..3 spreads, the
  centre being the phrase itself), mean over phrases;
* ``value_notes``: share of phrases for which the value knob plays exactly 6, 9, 12 notes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from glsr_live.attributes import compute
from glsr_live.axis import resolve_targets
from glsr_live.model import Model, PhraseKeeper, logits_to_tokens, offset_latent, refined_code
from glsr_live.tokens import HOLD

from .evaluate import evaluation_windows
from .metrics import mean_row_spearman

SWEEP = np.linspace(-3.0, 3.0, 25)


def phrases_of(model: Model, args: argparse.Namespace) -> np.ndarray:
    """Up to ``args.phrases`` distinct windows with at least three notes, in a fixed order."""
    windows, _, _ = evaluation_windows(model, args)
    windows = np.unique(windows, axis=0)
    windows = windows[(windows >= 2).sum(1) >= 3]
    order = np.random.default_rng(0).permutation(len(windows))[: args.phrases]
    return windows[order]


def plays(editor: PhraseKeeper, mu: np.ndarray, offsets: dict[str, float]) -> np.ndarray:
    """(L,) what the engine plays for these offsets: the phrase at rest, else the edit
    (moves measured from the phrase's code, as the engine's offset knobs are)."""
    if not any(offsets.values()):
        return editor.tokens
    follow = ("notes", *sorted(k for k, v in offsets.items() if v and k != "notes"))
    keeper = PhraseKeeper(editor.model, editor.tokens, editor.fidelity, follow,
                          origin=mu if editor.fidelity > 0 else None)
    return keeper.decode_tokens(offset_latent(mu, offsets, editor.info)[None])[0]


def onsets(tokens: np.ndarray) -> set[tuple[int, int]]:
    return {(step, int(token)) for step, token in enumerate(tokens) if token >= 2}


def phrase_report(model: Model, tokens: np.ndarray, fidelity: float, refine: bool) -> dict:
    info = model.info
    mean, logvar = (row[0] for row in model.encode(tokens[None]))
    mu = refined_code(model, tokens, mean, logvar) if refine else mean
    editor = PhraseKeeper(model, tokens, fidelity)
    own = onsets(tokens)
    decoded = logits_to_tokens(np.asarray(model.decode(mu[None])))[0]
    report = {"rest_exact": bool(np.array_equal(plays(editor, mu, {}), tokens)),
              "code_nonhold": float(((decoded == tokens) & (tokens != HOLD)).sum()
                                    / max(1, (tokens != HOLD).sum()))}
    for spreads in (-1.0, 1.0):
        moved = plays(editor, mu, {"notes": spreads})
        kept = len(own & onsets(moved))
        report[f"kept_{spreads:+.0f}"] = kept / len(own)
        # of the notes that could stay: a knob that removes notes cannot keep them all
        report[f"keepable_{spreads:+.0f}"] = kept / max(1, min(len(own), len(onsets(moved))))
        report[f"moved_{spreads:+.0f}"] = bool((len(onsets(moved)) - len(own)) * spreads > 0)
    for name in info.axes:
        swept = np.stack([plays(editor, mu, {name: float(o)}) for o in SWEEP])
        report[f"along_{name}"] = compute(name, swept, info.vocab, info.grid)
    if "notes" in info.axes:
        for count in (6, 9, 12):
            keeper = PhraseKeeper(model, tokens, fidelity, ("notes",))
            z, _ = resolve_targets(keeper, info, mu, {"notes": float(count)})
            played = keeper.exactly(count).decode_tokens(z[None])[0]
            report[f"value_{count}"] = len(onsets(played)) == count
    return report


def summarise(reports: list[dict], names: list[str]) -> dict:
    def share(key: str) -> float:
        return round(float(np.mean([r[key] for r in reports])), 3)

    summary = {"phrases": len(reports), "rest_exact": share("rest_exact"),
               "code_nonhold": share("code_nonhold"),
               "kept_at": {"-1": share("kept_-1"), "+1": share("kept_+1")},
               "kept_of_keepable": {"-1": share("keepable_-1"), "+1": share("keepable_+1")},
               "moved_share": round(float(np.mean([r[k] for r in reports
                                                   for k in ("moved_-1", "moved_+1")])), 3),
               "along": {name: round(float(mean_row_spearman(
                   SWEEP,
                   np.stack([r[f"along_{name}"] for r in reports]))), 3) for name in names}}
    if all("value_6" in r for r in reports):
        summary["value_notes"] = {str(c): share(f"value_{c}") for c in (6, 9, 12)}
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m glsr_train.phrase_eval",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--melodies", action="append", metavar="DIR|music21:NAME")
    parser.add_argument("--metre", help="only tunes in this one of the model's metres")
    parser.add_argument("--phrases", type=int, default=200)
    parser.add_argument("--fidelity", type=float, action="append",
                        help="fidelities to compare (default: 0 and 8)")
    parser.add_argument("--no-refine", dest="refine", action="store_false",
                        help="edit from the encoder's mean, not the refined code")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    args = parser.parse_args(argv)
    args.corpus = args.windows_of = None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = Model(args.model)
    phrases = phrases_of(model, args)
    report = {"model": str(args.model), "split": "melodies" if args.melodies else args.split,
              "command": " ".join(["python -m glsr_train.phrase_eval", *sys.argv[1:]])}
    for fidelity in args.fidelity or [0.0, 8.0]:
        reports = []
        for index, tokens in enumerate(phrases):
            reports.append(phrase_report(model, tokens, fidelity, args.refine))
            if (index + 1) % 50 == 0:
                print(f"fidelity {fidelity:g}: {index + 1}/{len(phrases)} phrases",
                      file=sys.stderr, flush=True)
        report[f"fidelity {fidelity:g}"] = summarise(reports, list(model.info.axes))
        print(json.dumps({f"fidelity {fidelity:g}": report[f"fidelity {fidelity:g}"]}))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
