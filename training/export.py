"""glsr-export: a run's best checkpoint -> a model directory the daemon runs without torch.

Writes encoder.onnx, decoder.onnx, model.json (docs/DESIGN.md, "the model directory") and the
torch weights a fine-tune starts from (weights.pt), and
refuses to write them when onnxruntime's logits differ from torch's by more than 1e-4 or
their argmax differs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from glsr_live.model import FORMAT_VERSION, Model, ModelError
from glsr_live.tokens import Vocabulary

from .checkpoint import CheckpointError, load_checkpoint
from .config import ConfigError, from_dict
from .corpus import CorpusError
from .dataset import attribute_summary, build_for
from .model import GLSRVAE
from .rundir import read_metrics

EXIT_USAGE = 2
EXIT_PARITY = 3
TOLERANCE = 1e-4


class Encoder(nn.Module):
    def __init__(self, vae: GLSRVAE):
        super().__init__()
        self.vae = vae

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vae.encode(tokens)


class Decoder(nn.Module):
    def __init__(self, vae: GLSRVAE):
        super().__init__()
        self.vae = vae

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z)


class ParityError(RuntimeError):
    pass


WEIGHTS = "weights.pt"  # torch weights beside the ONNX graphs: what `glsr-train --init` starts from


def fine_tuning_weights(checkpoint: dict) -> dict:
    """The checkpoint without its optimiser state: weights, shapes, config, vocabulary and
    axes, all a fine-tune needs (the runtime never reads it)."""
    return {key: value for key, value in checkpoint.items() if key != "optimizer"}


def load_model(checkpoint: dict) -> GLSRVAE:
    model = GLSRVAE.of_shape(checkpoint["model_args"])
    model.load_state_dict(checkpoint["model"])
    return model.eval()


def export_graphs(model: GLSRVAE, folder: Path) -> None:
    tokens = torch.zeros(2, model.seq_len, dtype=torch.int64)
    z = torch.zeros(2, model.config.latent_dim)
    common = {"dynamo": False, "opset_version": 17, "do_constant_folding": True}
    with warnings.catch_warnings():
        # torch warns that an LSTM traced at batch 2 may fail at other batch sizes; the parity
        # check runs both graphs on a batch of real windows before anything is written.
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
        torch.onnx.export(Encoder(model), (tokens,), str(folder / "encoder.onnx"),
                          input_names=["tokens"], output_names=["mu", "logvar"],
                          dynamic_axes={"tokens": {0: "batch"}, "mu": {0: "batch"},
                                        "logvar": {0: "batch"}}, **common)
        torch.onnx.export(Decoder(model), (z,), str(folder / "decoder.onnx"),
                          input_names=["z"], output_names=["logits"],
                          dynamic_axes={"z": {0: "batch"}, "logits": {0: "batch"}}, **common)


@torch.no_grad()
def check_parity(model: GLSRVAE, runtime: Model, tokens: np.ndarray) -> dict[str, float]:
    """Max |torch - onnxruntime| of mu and logits on real windows; raises on a mismatch."""
    mu_torch, _ = model.encode(torch.from_numpy(tokens))
    logits_torch = model.decode(mu_torch).numpy()
    mu_onnx, _ = runtime.encode(tokens)
    logits_onnx = runtime.decode(mu_torch.numpy())
    report = {"mu_max_abs_diff": float(np.abs(mu_onnx - mu_torch.numpy()).max()),
              "logits_max_abs_diff": float(np.abs(logits_onnx - logits_torch).max()),
              "argmax_mismatches": int((logits_onnx.argmax(-1) != logits_torch.argmax(-1)).sum())}
    if (report["mu_max_abs_diff"] > TOLERANCE or report["logits_max_abs_diff"] > TOLERANCE
            or report["argmax_mismatches"]):
        raise ParityError(f"onnxruntime and torch disagree: {report}")
    return report


@torch.no_grad()
def latent_stats(model: GLSRVAE, windows: np.ndarray) -> dict[str, list[float]]:
    mus = torch.cat([model.encode(b)[0] for b in torch.from_numpy(windows).split(2048)]).numpy()
    p5, p50, p95 = np.percentile(mus, [5, 50, 95], axis=0)
    as_list = lambda a: [round(float(v), 5) for v in a]  # noqa: E731
    return {"mean": as_list(mus.mean(0)), "std": as_list(mus.std(0)), "p5": as_list(p5),
            "p50": as_list(p50), "p95": as_list(p95)}


def metrics_at(run: Path, step: int) -> dict:
    """The validation record logged at ``step`` (the exported checkpoint's), else the last."""
    records = read_metrics(run / "metrics.jsonl")
    matching = [r for r in records if r["step"] == step]
    return (matching or records or [{}])[-1]


def model_json(checkpoint: dict, windows: np.ndarray, stats: dict, run: Path,
               summary: dict, parity: dict) -> dict:
    config = from_dict(checkpoint["config"])
    low, high = checkpoint["vocab"]
    steps_per_beat, beats_per_bar = checkpoint["grid"]
    return {
        "format_version": FORMAT_VERSION,
        "vocabulary": Vocabulary(low, high).names(),
        "seq_len": checkpoint["model_args"]["seq_len"],
        "steps_per_beat": steps_per_beat,
        "beats_per_bar": beats_per_bar,
        "metres": config.data.metres or [f"{beats_per_bar}/4"],  # the time signatures it plays
        "latent_dim": checkpoint["model_args"]["latent_dim"],
        "attributes": [
            {"name": a["name"], "dim": a["dim"], "prior": {"mu": a["mu"], "sigma": a["sigma"]},
             "range": summary[a["name"]]}
            for a in checkpoint["attributes"]
        ],
        "latent_stats": stats,
        "training": {
            "config": checkpoint["config"], "config_hash": config.digest(),
            "model_args": checkpoint["model_args"], "steps": checkpoint["state"]["step"],
            "minutes": round(checkpoint["state"]["seconds"] / 60, 1),
            "train_windows": int(len(windows)), "run": run.name,
            "provenance": checkpoint.get("provenance", {}),
        },
        "metrics": {"validation": {k: v for k, v in
                                   metrics_at(run, checkpoint["state"]["step"]).items()
                                   if k.startswith("val_") or k == "step"}},
        "export": {"parity": parity, "exported": time.strftime("%Y-%m-%dT%H:%M:%S")},
    }


def export(run: Path, out: Path, checkpoint_name: str = "best.pt") -> dict:
    """Export ``run/checkpoint_name`` to ``out`` atomically (a temp folder, then rename)."""
    checkpoint = load_checkpoint(run / checkpoint_name)
    model = load_model(checkpoint)
    config = from_dict(checkpoint["config"])
    dataset = build_for(config.data, progress=False)
    windows = dataset.windows("train")
    sample = windows[np.random.default_rng(0).permutation(len(windows))[:20000]]
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    staging.chmod(0o755)  # mkdtemp makes it private; a model directory is meant to be shared
    try:
        export_graphs(model, staging)
        # a fine-tune keeps its base's statistics: knob travel in spreads of the base's codes,
        # so each knob moves its attribute as far as it did (a folder of one style would
        # measure its own narrow spread and shrink every knob)
        stats = checkpoint.get("latent_stats") or latent_stats(model, sample)
        torch.save({**fine_tuning_weights(checkpoint), "latent_stats": stats}, staging / WEIGHTS)
        info = model_json(checkpoint, windows, stats, run, attribute_summary(sample, dataset),
                          parity={})
        info["latent_stats_from"] = "base" if checkpoint.get("latent_stats") else "this model"
        (staging / "model.json").write_text(json.dumps(info, indent=1))
        # a small folder has no val tunes: training validated on train windows, and so does this
        checked = dataset.windows("val")[:512]
        parity = check_parity(model, Model(staging), checked if len(checked) else windows[:512])
        info["export"]["parity"] = parity
        (staging / "model.json").write_text(json.dumps(info, indent=1))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="glsr-export", description=__doc__)
    parser.add_argument("run", type=Path, help="run directory written by glsr-train")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--checkpoint", default="best.pt", help="best.pt (default) or latest.pt")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        info = export(args.run, args.out, args.checkpoint)
    except ParityError as error:
        print(f"glsr-export: refusing to write {args.out}: {error}", file=sys.stderr)
        return EXIT_PARITY
    except (CheckpointError, ConfigError, CorpusError, ModelError) as error:
        print(f"glsr-export: {error}", file=sys.stderr)
        return EXIT_USAGE
    parity = info["export"]["parity"]
    print(f"glsr-export: wrote {args.out} (step {info['training']['steps']}, logits max diff "
          f"{parity['logits_max_abs_diff']:.2e}, argmax mismatches "
          f"{parity['argmax_mismatches']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
