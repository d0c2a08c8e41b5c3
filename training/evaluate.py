"""glsr-eval: does moving along a regularised axis change its attribute, and only that?

Runs exported ONNX models (the daemon's own loader) on a split of the dataset and writes
REPORT_DIR/metrics.json plus the paper's figures 2-5 as PNG (and figure 4 as MIDI).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from glsr_live.attributes import compute
from glsr_live.axis import axis_table, reach, search_offsets
from glsr_live.catalog import default_preset
from glsr_live.knobs import PresetError, load_preset
from glsr_live.midifile import write_notes
from glsr_live.model import Model, ModelError, morph_latent
from glsr_live.tokens import HOLD, Note, tokens_to_notes

from .corpus import CorpusError
from .dataset import Dataset, DatasetSettings, build
from .metrics import AXIS_SPAN, mean_row_spearman, nonhold_by_events, token_accuracy

EXIT_USAGE = 2
AXIS_STEPS = 25
PLANE_POINTS = 41
VALUE_PHRASES = 200  # phrases for the value-target shares
MORPH_PAIRS = 100  # phrase pairs for the morph sweeps
OTHER_ATTRIBUTES = ("notes", "register", "range", "highest", "lowest", "black_keys", "rhythm")


@dataclass
class Split:
    windows: np.ndarray  # (N, L) tokens
    mu: np.ndarray  # (N, d)


def encode_split(model: Model, windows: np.ndarray) -> Split:
    chunks = np.array_split(windows, max(1, len(windows) // 2048))
    mus = [model.encode(chunk)[0] for chunk in chunks]
    return Split(windows, np.concatenate(mus))


def decode_argmax(model: Model, z: np.ndarray) -> np.ndarray:
    """(N, d) -> (N, L) canonical tokens, decoded in chunks."""
    chunks = np.array_split(z.astype(np.float32), max(1, len(z) // 4096))
    return np.concatenate([model.decode_tokens(chunk) for chunk in chunks])


def attribute(model: Model, name: str, tokens: np.ndarray) -> np.ndarray:
    return compute(name, tokens, model.info.vocab, model.info.grid)


# ---------------------------------------------------------------- metrics


def reconstruction(model: Model, split: Split) -> dict[str, float]:
    predicted = decode_argmax(model, split.mu)
    accuracy, nonhold = token_accuracy(predicted, split.windows, HOLD)
    return {"recon_accuracy": accuracy, "recon_accuracy_nonhold": nonhold,
            "nonhold_by_events": nonhold_by_events(predicted, split.windows, HOLD)}


def axis_sweeps(model: Model, mu: np.ndarray, dim: int, offsets: np.ndarray) -> np.ndarray:
    """(P, S, L) argmax decodes of each phrase's mu with ``dim`` moved by each offset."""
    z = np.repeat(mu[:, None, :], len(offsets), axis=1)  # (P, S, d)
    z[:, :, dim] += offsets[None, :]
    tokens = decode_argmax(model, z.reshape(-1, mu.shape[1]))
    return tokens.reshape(len(mu), len(offsets), -1)


def along_axis(model: Model, phrases: np.ndarray, dim: int, name: str) -> dict:
    """Mean per-phrase Spearman between the axis value and each attribute of the decode."""
    offsets = np.linspace(-AXIS_SPAN, AXIS_SPAN, AXIS_STEPS)
    sweeps = axis_sweeps(model, phrases, dim, offsets)  # (P, S, L)
    flat = sweeps.reshape(-1, sweeps.shape[-1])
    correlations = {}
    for other in OTHER_ATTRIBUTES:
        values = attribute(model, other, flat).reshape(len(phrases), len(offsets))
        correlations[other] = mean_row_spearman(offsets, values)
    return {"dim": dim, "spearman_along_axis": correlations[name],
            "cross_attribute": {k: round(abs(v), 4) for k, v in correlations.items()
                                if k != name}}


def mutual_information(x: np.ndarray, y: np.ndarray, bins: int = 20) -> float:
    keep = np.isfinite(x) & np.isfinite(y)
    joint, _, _ = np.histogram2d(x[keep], y[keep], bins=bins)
    joint = joint / max(joint.sum(), 1)
    px, py = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nonzero = joint > 0
    return float((joint[nonzero] * np.log(joint[nonzero] / (px @ py)[nonzero])).sum())


def interpretability(model: Model, split: Split, name: str) -> dict:
    """AR-VAE's score: the dim with the most mutual information, R^2 of a 1-D linear fit."""
    values = attribute(model, name, split.windows)
    scores = [mutual_information(split.mu[:, d], values) for d in range(split.mu.shape[1])]
    best = int(np.argmax(scores))
    keep = np.isfinite(values)
    x, y = split.mu[keep, best], values[keep]
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    r2 = 1 - residual.var() / max(y.var(), 1e-12)
    return {"interpretability": float(r2), "interpretability_dim": best}


def knob_curve(model: Model, phrases: np.ndarray, dim: int, name: str,
               knob_range: tuple[float, float]) -> dict:
    """Mean change of the attribute against the phrase's own decode across the knob range, and
    of every other attribute at the knob's two ends (what else the knob moves, in its units)."""
    units = np.linspace(knob_range[0], knob_range[1], 11)
    std = float(model.info.latent.std[dim])
    sweeps = axis_sweeps(model, phrases, dim, np.append(units * std, 0.0))
    flat = sweeps.reshape(-1, sweeps.shape[-1])  # (P * 12, L), each phrase's own decode last
    delta = mean_change(model, name, flat, len(phrases))
    others = {other: mean_change(model, other, flat, len(phrases))[[0, -1]]
              for other in OTHER_ATTRIBUTES if other != name}
    return {"knob_units": units.round(3).tolist(), "mean_change": delta.round(3).tolist(),
            "low_end_change": float(delta[0]), "high_end_change": float(delta[-1]),
            "latent_std": std,
            "other_end_changes": {k: [round(float(v), 3) if np.isfinite(v) else None
                                      for v in ends] for k, ends in others.items()}}


def mean_change(model: Model, name: str, flat: np.ndarray, phrases: int) -> np.ndarray:
    """(S,) mean change of ``name`` from each phrase's own decode (the last of its S + 1
    sweep points) to each other point; phrases where it is undefined (silence) are left out."""
    values = attribute(model, name, flat).reshape(phrases, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no notes anywhere
        return np.nanmean(values[:, :-1] - values[:, -1:], axis=0)


def value_targets(model: Model, phrases: np.ndarray, name: str) -> dict:
    """How often a value knob gets exactly what it asks for: for each wanted value, the share
    of phrases (P, d) whose search along the axis (the live engine's) finds it (register:
    within a semitone). ``range_90`` is the widest run of consecutive wanted values each met
    for >= 90 % of them."""
    tables = [axis_table(model, model.info, z, name, search_offsets()) for z in phrases]
    found = np.concatenate([t.values[np.isfinite(t.values)] for t in tables])
    if len(found) == 0:
        return {"shares": {}, "range_90": None}
    low, high = int(np.floor(found.min())), int(np.ceil(found.max()))
    shares = {value: float(np.mean([reach(t, value).reached for t in tables]))
              for value in range(low, high + 1)}
    return {"shares": {str(k): round(v, 3) for k, v in shares.items()},
            "range_90": widest_run([value for value, share in shares.items() if share >= 0.9])}


def widest_run(values: list[int]) -> list[int] | None:
    """[first, last] of the longest run of consecutive integers in sorted ``values``."""
    best, start = None, None
    for index, value in enumerate(values):
        if index == 0 or value != values[index - 1] + 1:
            start = value
        if best is None or value - start > best[1] - best[0]:
            best = [start, value]
    return best


def morph_sweeps(model: Model, split: Split, pairs: int, steps: int = 9, seed: int = 0) -> dict:
    """The morph knob on random phrase pairs (A, B): along 0..1 the regularised attributes
    should hold at A's decoded values (notes within 1, register within 2 semitones) while the
    melody goes from A's to B's (token agreement with each window at each end)."""
    rng = np.random.default_rng(seed)
    pairs = min(pairs, len(split.mu) // 2)  # a split of fewer windows gives fewer pairs
    chosen = rng.permutation(len(split.mu))[: 2 * pairs].reshape(-1, 2)
    amounts = np.linspace(0.0, 1.0, steps)
    z = np.stack([morph_latent(split.mu[a], split.mu[b], m, model.info)
                  for a, b in chosen for m in amounts])
    tokens = decode_argmax(model, z).reshape(len(chosen), steps, -1)  # (P, S, L)
    held = {}
    for name, limit in (("notes", 1.0), ("register", 2.0)):
        if name not in model.info.axes:
            continue
        values = attribute(model, name, tokens.reshape(-1, tokens.shape[-1])).reshape(
            len(chosen), steps)
        gap = np.abs(values - values[:, :1])  # from A's own decode
        held[name] = float(np.mean(np.where(np.isnan(gap), 0.0, gap) <= limit))
    a_tokens, b_tokens = split.windows[chosen[:, 0]], split.windows[chosen[:, 1]]
    return {"pairs": int(len(chosen)), "steps": steps, "held_share": held,
            "agreement_with_a": [round(float((tokens[:, i] == a_tokens).mean()), 3)
                                 for i in (0, -1)],
            "agreement_with_b": [round(float((tokens[:, i] == b_tokens).mean()), 3)
                                 for i in (0, -1)]}


def preset_range(preset: Path, model: Model, name: str) -> tuple[float, float]:
    knobs = load_preset(preset, set(model.info.axes)).knobs
    found = [k for k in knobs if k.target == name]
    return (found[0].min, found[0].max) if found else (-2.5, 2.5)


def evaluate(model: Model, split: Split, names: list[str], phrases: int, preset: Path | None,
             seed: int = 0) -> dict:
    """Every metric for one model. Each attribute is swept along the model's regularised dim
    for it, or, where it has none (the baseline), along its most informative dim."""
    rng = np.random.default_rng(seed)
    chosen = split.mu[rng.permutation(len(split.mu))[:phrases]]
    result: dict = {**reconstruction(model, split), "phrases": int(len(chosen)),
                    "windows": int(len(split.windows)), "attributes": {}}
    for name in names:
        informative = interpretability(model, split, name)
        axis = model.info.axes.get(name)
        dim = axis.dim if axis is not None else informative["interpretability_dim"]
        entry = {**along_axis(model, chosen, dim, name), **informative,
                 "swept": "regularised dim" if axis is not None else "most informative dim"}
        if axis is not None:
            entry["value_targets"] = value_targets(model, chosen[:VALUE_PHRASES], name)
        if preset is not None and axis is not None:
            entry["knob_curve"] = knob_curve(model, chosen, dim, name,
                                             preset_range(preset, model, name))
        result["attributes"][name] = entry
    if model.info.axes:
        result["morph"] = morph_sweeps(model, split, MORPH_PAIRS)
    return result


# ---------------------------------------------------------------- figures


def plane_values(model: Model, dims: tuple[int, int], names: list[str]) -> dict[str, np.ndarray]:
    """Attributes of argmax decodes over [-3, 3]^2 in the plane of ``dims`` (others at 0)."""
    axis = np.linspace(-AXIS_SPAN, AXIS_SPAN, PLANE_POINTS)
    grid_x, grid_y = np.meshgrid(axis, axis)
    z = np.zeros((grid_x.size, model.info.latent_dim), dtype=np.float32)
    z[:, dims[0]], z[:, dims[1]] = grid_x.ravel(), grid_y.ravel()
    tokens = decode_argmax(model, z)
    return {n: attribute(model, n, tokens).reshape(grid_x.shape) for n in names}


def other_dim(model: Model, used: set[int]) -> int:
    return next(d for d in range(model.info.latent_dim) if d not in used)


def plot_planes(panels: list[tuple[str, np.ndarray]], dims: tuple[int, int], path: Path,
                title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4), squeeze=False)
    for axis, (label, values) in zip(axes[0], panels, strict=True):
        image = axis.imshow(values, origin="lower", extent=[-3, 3, -3, 3], cmap="viridis",
                            aspect="equal")
        axis.set_title(label, fontsize=10)
        axis.set_xlabel(f"z{dims[0]}")
        axis.set_ylabel(f"z{dims[1]}")
        figure.colorbar(image, ax=axis, shrink=0.8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_variations(model: Model, phrase_mu: np.ndarray, phrase_tokens: np.ndarray,
                    axes: dict[str, int], out: Path) -> None:
    """Figure 4: one phrase moved along each axis in equal steps, as piano rolls and MIDI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    offsets = np.linspace(-2.0, 2.0, 9)
    vocab, length = model.info.vocab, model.info.grid.seq_len
    figure, rows = plt.subplots(len(axes), 1, figsize=(16, 2.6 * len(axes)), squeeze=False)
    for row, (name, dim) in zip(rows[:, 0], axes.items(), strict=True):
        sweeps = axis_sweeps(model, phrase_mu[None], dim, offsets)[0]
        segments = [phrase_tokens, *sweeps]
        notes = [Note(n.onset + i * length, n.length, n.pitch)
                 for i, t in enumerate(segments) for n in tokens_to_notes(t, vocab)]
        write_notes(out / f"fig4_{name}.mid", notes, model.info.grid)
        for note in notes:
            colour = "0.3" if note.onset < length else "tab:blue"
            row.add_patch(plt.Rectangle((note.onset, note.pitch - 0.4), note.length - 0.1, 0.8,
                                        color=colour))
        for index in range(len(segments) + 1):
            row.axvline(index * length, color="0.6", lw=0.8)
        labels = ["phrase"] + [f"{o:+.1f}" for o in offsets]
        row.set_xticks([(i + 0.5) * length for i in range(len(segments))], labels)
        row.set_xlim(0, len(segments) * length)
        row.set_ylim(vocab.low - 1, vocab.high + 1)
        row.set_ylabel("MIDI pitch")
        row.set_title(f"moving only z{dim} ({name}) in equal steps", fontsize=10)
    figure.tight_layout()
    figure.savefig(out / "fig4_variations.png", dpi=100)
    plt.close(figure)


def plot_posterior(split: Split, model: Model, dims: tuple[int, int], name: str,
                   path: Path) -> None:
    """Figure 5: the aggregated posterior on (z_i, z_j), coloured by the attribute."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sample = np.random.default_rng(1).permutation(len(split.mu))[:6000]
    values = attribute(model, name, split.windows[sample])
    figure, axis = plt.subplots(figsize=(5.5, 4.6))
    points = axis.scatter(split.mu[sample, dims[0]], split.mu[sample, dims[1]], c=values, s=3,
                          cmap="viridis", alpha=0.7)
    figure.colorbar(points, ax=axis, label=name)
    axis.set_xlabel(f"z{dims[0]} (regularised: {name})")
    axis.set_ylabel(f"z{dims[1]}")
    axis.set_title("aggregated posterior q(z)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def figures(model: Model, baseline: Model | None, split: Split, axes: dict[str, int],
            out: Path) -> list[str]:
    written = []
    for name, dim in axes.items():
        dims = (dim, other_dim(model, set(axes.values())))
        panels = [(f"GLSR-VAE: {name}", plane_values(model, dims, [name])[name])]
        if baseline is not None:
            panels.append((f"baseline VAE: {name}", plane_values(baseline, dims, [name])[name]))
        plot_planes(panels, dims, out / f"fig2_{name}.png",
                    f"{name} of the argmax decode on the plane (z{dims[0]}, z{dims[1]})")
        others = [n for n in ("highest", "lowest", "black_keys", "register", "notes")
                  if n != name][:4]
        values = plane_values(model, dims, others)
        plot_planes([(n, values[n]) for n in others], dims, out / f"fig3_{name}.png",
                    f"other attributes on the plane of the {name} axis")
        plot_posterior(split, model, dims, name, out / f"fig5_{name}.png")
        written += [f"fig2_{name}.png", f"fig3_{name}.png", f"fig5_{name}.png"]
    index = int(np.argmin(np.abs(attribute(model, "notes", split.windows) - 6)))
    plot_variations(model, split.mu[index], split.windows[index], axes, out)
    return written + ["fig4_variations.png"] + [f"fig4_{n}.mid" for n in axes]


# ---------------------------------------------------------------- command line


def trained_data(model: Model) -> dict:
    """The [data] section the model was trained with (empty for models that predate it)."""
    return model.info.raw.get("training", {}).get("config", {}).get("data", {})


def model_settings(model: Model, metre: str | None = None) -> DatasetSettings:
    """The dataset settings the model was trained on (bach-soprano's before they were kept),
    in one of its metres if ``metre`` is given."""
    data = trained_data(model)
    corpus = data.get("corpus", "bach")
    metres = (metre,) if metre else tuple(data.get("metres") or ())
    return DatasetSettings(corpus=tuple(corpus) if isinstance(corpus, list) else corpus,
                           seq_len=model.info.grid.seq_len, stride=data.get("stride", 4),
                           beats_per_bar=model.info.grid.beats_per_bar,
                           track=data.get("track"), windows=data.get("windows", "stride"),
                           max_shift=data.get("max_shift"), metres=metres)


def trained_dataset(model: Model, metre: str | None = None) -> Dataset:
    """The dataset the model was trained on (built once per glsr-eval run: the family split of
    a large mix takes a while), its tunes in ``metre`` only if given."""
    fixed = trained_data(model).get("vocab")  # a fine-tune's pitch range is its base's
    dataset = build(model_settings(model, metre), progress=False,
                    vocab=model.info.vocab if fixed else None)
    if dataset.vocab != model.info.vocab:
        raise ModelError("the model's vocabulary does not match the dataset's")
    return dataset


def split_windows(dataset: Dataset, name: str, source: str | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(N, L) every window of the split in every transposition (of one source, if given), and
    (N,) True where a window's transposition-invariant pattern occurs nowhere in train (the
    ``unseen`` part)."""
    sources = dataset.settings.sources
    if source is not None and source not in sources:
        raise CorpusError(f"the model was not trained on {source!r} (its corpus: "
                          f"{', '.join(sources)})")
    windows = dataset.windows(name, source=source)
    return windows, dataset.unseen(windows)


def windows_of(other: Model, model: Model, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``other``'s split (windows and unseen mask, by ``other``'s train) in ``model``'s tokens:
    two models measured on one set of windows. Windows outside ``model``'s range are left out."""
    windows, unseen = split_windows(trained_dataset(other), name)
    shift = other.info.vocab.low - model.info.vocab.low  # pitch tokens move, rest/hold stay
    moved = np.where(windows >= 2, windows + shift, windows)
    fits = ((moved < model.info.vocab.size) & (moved >= 0)).all(axis=1)
    return moved[fits], unseen[fits]


def folder_windows(model: Model, folders: list[str], metre: str | None = None) -> np.ndarray:
    """Every untransposed window of the melodies in ``folders`` (or music21 corpus names other
    than the training ones), octave-moved into the model's range: melodies it never saw (those
    in the model's metres, or in ``metre``, for a model trained on some)."""
    settings = replace(model_settings(model, metre), corpus=tuple(folders))
    dataset = build(settings, progress=False, vocab=model.info.vocab)
    chunks = [dataset.line_windows(i, transpose=False) for i in range(len(dataset.lines))
              if dataset.in_metres(i)]
    if not chunks:
        raise CorpusError(f"no melody of {', '.join(folders)} is in "
                          f"{metre or model.info.metre}")
    return np.concatenate(chunks)


def evaluate_parts(model: Model, windows: np.ndarray, unseen: np.ndarray, names: list[str],
                   phrases: int, preset: Path | None) -> tuple[dict, Split]:
    """Metrics on the whole split, with the same metrics on its unseen part nested inside."""
    split = encode_split(model, windows)
    whole = evaluate(model, split, names, phrases, preset)
    if unseen.any() and not unseen.all():
        part = Split(split.windows[unseen], split.mu[unseen])
        whole["unseen"] = evaluate(model, part, names, phrases, preset)
    whole["unseen_share"] = round(float(unseen.mean()), 4)
    return whole, split


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="glsr-eval", description=__doc__)
    parser.add_argument("model", type=Path, help="regularised model directory")
    parser.add_argument("--baseline", type=Path, help="unregularised model directory")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--corpus", help="only this source of the model's training mix "
                                        "(e.g. bach); default: all, each also reported alone")
    where.add_argument("--windows-of", type=Path, metavar="MODEL",
                       help="the split as MODEL's dataset defines it (two models, one test set)")
    where.add_argument("--melodies", action="append", metavar="DIR",
                       help="every window of the melodies in DIR instead of a split: tunes "
                            "from outside the training collections (repeatable)")
    parser.add_argument("--metre", help="only tunes in this metre, one the model plays (a 4/4 "
                                        "model plays 2/2 and 2/4 too; a model of several "
                                        "metres reports each alone too)")
    parser.add_argument("--out", type=Path, required=True, help="report directory")
    parser.add_argument("--phrases", type=int, default=300, help="phrases for axis sweeps")
    parser.add_argument("--preset", type=Path, default=default_preset(),
                        help="knob preset whose ranges the knob curves use")
    parser.add_argument("--no-figures", action="store_true")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    model = Model(args.model, threads=2)
    baseline = Model(args.baseline, threads=2) if args.baseline else None
    axes = {name: axis.dim for name, axis in model.info.axes.items()}
    windows, unseen, dataset = evaluation_windows(model, args)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"split": "melodies" if args.melodies else args.split, "model": str(args.model),
              "command": " ".join(["glsr-eval", *map(str, sys.argv[1:])])}
    report["regularised"], split = evaluate_parts(model, windows, unseen, list(axes),
                                                  args.phrases, args.preset)
    if dataset is not None and len(dataset.settings.sources) > 1 and not args.corpus:
        report["per_corpus"] = per_source(model, dataset, args, list(axes))
    if len(model.info.metres) > 1 and args.metre is None:
        report["per_metre"] = per_metre(model, args, list(axes), dataset)
    if baseline is not None:
        report["baseline"], _ = evaluate_parts(baseline, windows, unseen, list(axes),
                                               args.phrases, None)
        report["baseline_model"] = str(args.baseline)
    if not args.no_figures:
        report["figures"] = figures(model, baseline, split, axes, args.out)
    (args.out / "metrics.json").write_text(json.dumps(report, indent=1))
    return report


def per_source(model: Model, dataset: Dataset, args: argparse.Namespace, names: list[str]
               ) -> dict:
    """The metrics of each source's part of the split; a source without windows there (music21's
    two Nottingham tunes are both in train) is reported as such."""
    parts = {}
    for source in dataset.settings.sources:
        windows, unseen = split_windows(dataset, args.split, source)
        parts[source] = (evaluate_parts(model, windows, unseen, names, args.phrases,
                                        args.preset)[0] if len(windows) else {"windows": 0})
    return parts


def per_metre(model: Model, args: argparse.Namespace, names: list[str],
              dataset: Dataset | None) -> dict:
    """The metrics of each of the model's metres alone, on the same split (cut from the
    dataset already built) or melodies."""
    parts = {}
    for metre in model.info.metres:
        try:
            windows, unseen = metre_windows(model, args, dataset, metre)
        except CorpusError:  # no tune of the melodies is in this metre
            windows = np.zeros((0, model.info.grid.seq_len), np.int64)
        parts[metre] = (evaluate_parts(model, windows, unseen, names, args.phrases,
                                       args.preset)[0] if len(windows) else {"windows": 0})
    return parts


def metre_windows(model: Model, args: argparse.Namespace, dataset: Dataset | None,
                  metre: str) -> tuple[np.ndarray, np.ndarray]:
    """The windows (and unseen mask) of ``args``'s split or melodies in ``metre`` alone."""
    if dataset is None:
        return evaluation_windows(model, argparse.Namespace(**{**vars(args), "metre": metre}))[:2]
    alone = replace(dataset, settings=replace(dataset.settings, metres=(metre,)))
    return split_windows(alone, args.split, getattr(args, "corpus", None))


def evaluation_windows(model: Model, args: argparse.Namespace
                       ) -> tuple[np.ndarray, np.ndarray, Dataset | None]:
    """The windows ``args`` ask for, their unseen mask, and the model's own dataset when they
    come from it."""
    metre = getattr(args, "metre", None)
    if metre is not None and not model.info.plays_metre(metre):
        raise CorpusError(f"--metre {metre}: the model plays {model.info.metre}")
    if args.melodies:
        windows = folder_windows(model, args.melodies, metre)
        return windows, np.ones(len(windows), dtype=bool), None
    if args.windows_of:
        return *windows_of(Model(args.windows_of), model, args.split), None
    dataset = trained_dataset(model, metre)
    return *split_windows(dataset, args.split, getattr(args, "corpus", None)), dataset


def print_report(report: dict) -> None:
    for label in ("regularised", "baseline"):
        if label not in report:
            continue
        print_part(label, report[label], report["split"])
        if "unseen" in report[label]:
            print_part(f"{label}, unseen part", report[label]["unseen"], report["split"])
    for source, part in report.get("per_corpus", {}).items():
        if part["windows"]:
            print_part(f"{source} alone", part, report["split"])
    for metre, part in report.get("per_metre", {}).items():
        if part["windows"]:
            print_part(f"{metre} alone", part, report["split"])


def print_part(label: str, part: dict, split: str) -> None:
    print(f"{label}: recon_accuracy {part['recon_accuracy']:.3f}, non-hold "
          f"{part['recon_accuracy_nonhold']:.3f} ({part['windows']} {split} windows)")
    bands = part.get("nonhold_by_events", {})
    if len(bands) > 1:
        print("  non-hold by events per window: " + ", ".join(
            f"{band} {entry['nonhold']:.3f} ({entry['windows']})" for band, entry in bands.items()))
    if "morph" in part:
        morph = part["morph"]
        held = ", ".join(f"{k} {v:.2f}" for k, v in morph["held_share"].items())
        print(f"  morph: held on {held} of steps; agreement with A {morph['agreement_with_a']}, "
              f"with B {morph['agreement_with_b']} (start, end)")
    for name, entry in part["attributes"].items():
        line = (f"  {name}: spearman_along_axis {entry['spearman_along_axis']:.3f} "
                f"(dim {entry['dim']}), interpretability {entry['interpretability']:.3f} "
                f"(dim {entry['interpretability_dim']})")
        if "knob_curve" in entry:
            curve = entry["knob_curve"]
            line += (f", knob low end {curve['low_end_change']:+.2f}, high end "
                     f"{curve['high_end_change']:+.2f}")
            line += "".join(f"; {other} there {fmt(low)} / {fmt(high)}"
                            for other, (low, high) in curve["other_end_changes"].items()
                            if other in part["attributes"])
        if entry.get("value_targets", {}).get("range_90"):
            low, high = entry["value_targets"]["range_90"]
            line += f", value knob exact >= 90 % for {low}..{high}"
        print(line)


def fmt(change: float | None) -> str:
    return "n/a" if change is None else f"{change:+.2f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except (ModelError, CorpusError, PresetError) as error:
        print(f"glsr-eval: {error}", file=sys.stderr)
        return EXIT_USAGE
    print_report(report)
    print(f"glsr-eval: wrote {args.out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
