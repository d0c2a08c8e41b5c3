"""Training runs, resume after SIGKILL, data-parallel ranks, export parity, model loading."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT
from glsr_train.checkpoint import load_checkpoint, load_latest
from glsr_train.export import ParityError, check_parity, load_model

from glsr_live.model import Model, ModelError, choose_providers

TINY = ROOT / "presets" / "train" / "tiny.toml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
GLSR_TRAIN = [sys.executable, "-m", "glsr_train.train"]  # not whichever glsr-train is on PATH


def train(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*GLSR_TRAIN, *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def test_model_json_records_where_the_model_came_from(tiny_model_dir):
    info = json.loads((tiny_model_dir / "model.json").read_text())
    origin = info["training"]["provenance"]
    assert origin["config_file"].endswith("tiny.toml")
    assert origin["config_file_sha1"] == hashlib.sha1(TINY.read_bytes()).hexdigest()
    assert origin["config_hash"] == info["training"]["config_hash"]
    assert len(origin["data_fingerprint"]) == 16 and origin["split_method"].startswith("tune")
    assert origin["device"].startswith("cpu") and origin["init_chain"] == []
    assert len(origin["commit"].removesuffix("+dirty")) == 40
    assert info["metrics"]["validation"]["step"] == info["training"]["steps"]


def test_tiny_run_exports_a_model_the_runtime_loads_and_decodes(tiny_model_dir):
    info = json.loads((tiny_model_dir / "model.json").read_text())
    assert info["format_version"] == 1 and info["seq_len"] == 32
    assert [a["name"] for a in info["attributes"]] == ["notes", "register"]
    assert len(info["latent_stats"]["std"]) == info["latent_dim"]
    assert info["export"]["parity"]["argmax_mismatches"] == 0
    model = Model(tiny_model_dir)
    import onnxruntime

    # CUDA where onnxruntime offers it (a GPU machine), else the CPU
    assert model.provider == choose_providers(onnxruntime.get_available_providers())[0]
    tokens = np.zeros((3, 32), dtype=np.int64)
    tokens[:, ::4] = 10
    mu, logvar = model.encode(tokens)
    assert mu.shape == logvar.shape == (3, info["latent_dim"])
    assert model.decode(mu).shape == (3, 32, len(info["vocabulary"]))
    assert model.decode_tokens(mu, temperature=1.0).shape == (3, 32)


def test_tiny_run_logs_every_term_of_its_objective(tiny_model_dir):
    records = [json.loads(line) for line in
               (tiny_model_dir.parent / "run" / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]
    for part in ("train_nll", "train_kl", "train_glsr_notes", "train_align", "train_calib",
                 "train_restore", "train_anchor"):
        assert math.isfinite(last[part]), part
    assert last["train_calib"] > 0 and last["train_restore"] > 0 and last["train_anchor"] > 0


def test_sigkill_mid_epoch_then_resume_continues_from_the_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    command = [*GLSR_TRAIN, "--config", str(TINY), "--out", str(run), "--max-steps", "200",
               "--no-export"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=ENV)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (run / "previous.pt").exists():
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = load_latest(run)["state"]
    assert 0 < saved["step"] < 200
    resumed = train("--out", str(run), "--resume", "--max-steps", "200")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming at step {saved['step']}" in resumed.stdout
    final = load_checkpoint(run / "latest.pt")["state"]
    assert final["step"] > saved["step"] and final["epoch"] >= saved["epoch"]
    logged = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged == sorted(logged) and logged[-1] > saved["step"]


def test_truncated_latest_checkpoint_falls_back_to_previous(tmp_path):
    run = tmp_path / "run"
    assert train("--config", str(TINY), "--out", str(run), "--max-steps", "30").returncode == 0
    data = (run / "latest.pt").read_bytes()
    (run / "latest.pt").write_bytes(data[: len(data) // 3])
    assert load_latest(run)["state"]["step"] == 20  # previous.pt, one checkpoint back
    resumed = train("--out", str(run), "--resume", "--max-steps", "40")
    assert resumed.returncode == 0, resumed.stderr[-2000:]


def test_a_two_stage_recipe_trains_its_first_stage_then_starts_from_it(tmp_path):
    """[train] first_stage: one command trains the named recipe in OUT/first-stage, then this
    one from its best.pt (recorded in init_chain); run again, the finished stage is kept."""
    recipe = tmp_path / "second.toml"
    recipe.write_text(TINY.read_text().replace(
        "patience = 3", f"patience = 3\nfirst_stage = {json.dumps(str(TINY))}"))
    run = tmp_path / "run"
    done = train("--config", str(recipe), "--out", str(run), "--max-steps", "20")
    assert done.returncode == 0, done.stderr[-2000:]
    first = run / "first-stage"
    assert load_checkpoint(first / "best.pt")["state"]["step"] == 40  # tiny.toml's own length
    assert not (first / "model").exists()  # only the second stage is exported
    info = json.loads((run / "model" / "model.json").read_text())
    chain = info["training"]["provenance"]["init_chain"]
    assert [Path(link["checkpoint"]) for link in chain] == [first / "best.pt"]
    assert chain[0]["config_file"] == str(TINY)
    assert info["training"]["steps"] == 20
    shutil.rmtree(run / "model")
    (run / "latest.pt").unlink()
    kept = train("--config", str(recipe), "--out", str(run), "--max-steps", "20", "--no-export")
    assert kept.returncode == 0, kept.stderr[-2000:]
    assert "first stage" not in kept.stdout and "second stage from" in kept.stdout
    (run / "latest.pt").unlink()  # as if stopped in the first stage: --resume alone cannot go on
    lost = train("--out", str(run), "--resume")
    assert lost.returncode == 2 and "stopped in its first stage" in lost.stderr
    assert len(lost.stderr.strip().splitlines()) == 1


def test_a_three_stage_recipe_trains_each_stage_before_it_in_nested_folders(tmp_path):
    """A first stage that names its own first stage: one command trains all three, innermost
    first, and init_chain lists both earlier stages, nearest first."""
    second = tmp_path / "second.toml"
    second.write_text(TINY.read_text().replace(
        "patience = 3", f"patience = 3\nfirst_stage = {json.dumps(str(TINY))}"))
    third = tmp_path / "third.toml"
    third.write_text(TINY.read_text().replace("patience = 3",
                                              'patience = 3\nfirst_stage = "second.toml"'))
    run = tmp_path / "run"
    done = train("--config", str(third), "--out", str(run), "--max-steps", "10")
    assert done.returncode == 0, done.stderr[-2000:]
    middle, innermost = run / "first-stage", run / "first-stage" / "first-stage"
    assert load_checkpoint(innermost / "best.pt")["state"]["step"] == 40
    assert load_checkpoint(middle / "best.pt")["state"]["step"] == 40  # its own length
    info = json.loads((run / "model" / "model.json").read_text())
    chain = info["training"]["provenance"]["init_chain"]
    assert [Path(link["checkpoint"]) for link in chain] == [middle / "best.pt",
                                                            innermost / "best.pt"]
    assert [link["config_file"] for link in chain] == [str(second), str(TINY)]
    assert info["training"]["steps"] == 10


def test_two_process_data_parallel_run_on_cpu(tmp_path):
    run = tmp_path / "ddp"
    # torchrun as a module of this interpreter: a torchrun script found on PATH may belong to
    # another Python (a virtualenv over system site-packages) that lacks this package
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    done = subprocess.run(
        [*torchrun, "--nproc_per_node", "2", "--master_port", "29517", "-m", "glsr_train.train",
         "--config", str(TINY), "--out", str(run), "--max-steps", "20", "--no-export"],
        capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stdout
    # ranks train on different halves of each batch: only averaged gradients keep them equal
    assert "parameters on 2 ranks differ by at most 0\n" in done.stdout
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [20]  # rank 0 alone writes


def test_export_refuses_a_graph_that_disagrees_with_torch(tiny_model_dir, tmp_path):
    run = tiny_model_dir.parent / "run"
    model = load_model(load_checkpoint(run / "best.pt"))
    runtime = Model(tiny_model_dir)
    tokens = np.random.default_rng(0).integers(0, 27, size=(16, 32))
    check_parity(model, runtime, tokens)  # the real export agrees
    with torch.no_grad():
        model.to_logits.bias += 1e-3
    with pytest.raises(ParityError):
        check_parity(model, runtime, tokens)


@pytest.mark.parametrize("damage", ["missing", "corrupt_onnx", "truncated_onnx", "version",
                                    "bad_json"])
def test_damaged_model_directories_are_one_line_errors(tiny_model_dir, tmp_path, damage):
    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    if damage == "missing":
        (broken / "decoder.onnx").unlink()
    elif damage == "corrupt_onnx":
        (broken / "encoder.onnx").write_bytes(b"not a protobuf at all")
    elif damage == "truncated_onnx":
        data = (broken / "decoder.onnx").read_bytes()
        (broken / "decoder.onnx").write_bytes(data[: len(data) // 2])
    elif damage == "version":
        info = json.loads((broken / "model.json").read_text())
        (broken / "model.json").write_text(json.dumps({**info, "format_version": 99}))
    else:
        (broken / "model.json").write_text("{not json")
    with pytest.raises(ModelError) as error:
        Model(broken)
    assert "\n" not in str(error.value)
    cli = subprocess.run([sys.executable, "-m", "glsr_live.cli", "bench", "--model", str(broken),
                          "--events", "5"], capture_output=True, text=True)
    assert cli.returncode == 2
    assert len(cli.stderr.strip().splitlines()) == 1 and "Traceback" not in cli.stderr


@pytest.mark.parametrize("text, message", [
    ("[train]\nbatch_size = 'big'\n", "must be a number"),
    ("[model]\nwidth = 3\n", "unknown key"),
    ("[train\n", "not valid TOML"),
    ("[glsr]\nattributes = [{ name = 'mood', dim = 0 }]\n", "no differentiable"),
    ("[glsr]\nsharpness = 0\n", "sharpness must be positive"),
    ("[glsr]\ngradient = 'finite_difference'\ndifference_step = 0\n",
     "difference_step must be positive"),
    ("[glsr]\ndifference_step = 0.5\n", "difference_step needs gradient = 'finite_difference'"),
    ("[schedule]\nalignment = -1\n", "must be >= 0"),
    ("[schedule]\ncalibration = { value = 1, ramp = -5 }\n", "must be >= 0"),
    ("[schedule]\nthinning = 1.5\n", "thinning is a share of the batch"),
    ("[schedule]\nstretching = 1.5\n", "stretching is a share of the batch"),
    ("[schedule]\nthinning = 0.6\nstretching = 0.6\n", "share the batch: at most 1 in all"),
    ("[schedule]\nrestoration = 1.0\n", "restoration needs altered windows"),
    ("[schedule]\nanchor = 0.5\n", "anchor needs altered windows"),
    ("[schedule]\nkl = 0.5\n", "unknown term(s) in [schedule]: kl"),
    ("[schedule]\nbeta = { value = 0.1, sart = 3 }\n", "unknown key(s) in [schedule.beta]"),
    ("[schedule]\nbeta = 'high'\n", "must be a table"),
    ("[glsr]\nattributes = [{ name = 'notes', dim = 0, mu = 'steep' }]\n", "mu must be"),
    ("[glsr]\nattributes = [{ name = 'notes', dim = 0, sigma = 0 }]\n", "sigma must be"),
    ("[glsr]\nattributes = [{ name = 'range', dim = 0, sharpness = 'x' }]\n",
     "sharpness of 'range' must be a positive number"),
    ("[glsr]\nattributes = [{ name = 'range', dim = 0, sharpness = 0 }]\n",
     "sharpness of 'range' must be a positive number"),
    ("[glsr]\ngradient = 'finite_difference'\n"
     "attributes = [{ name = 'range', dim = 0, difference_step = -1 }]\n",
     "difference_step of 'range' must be a positive number"),
    ("[glsr]\nattributes = [{ name = 'range', dim = 0, difference_step = 0.5 }]\n",
     "difference_step of 'range' needs gradient = 'finite_difference'"),
    ("[glsr]\nattributes = [{ name = 'range', dim = 0, straight_through = true }]\n",
     "straight_through of 'range' needs gradient = 'finite_difference'"),
    ("[glsr]\ngradient = 'finite_difference'\n"
     "attributes = [{ name = 'range', dim = 0, straight_through = 1 }]\n",
     "straight_through of 'range' must be true or false"),
    ("[glsr]\nstraight_through = true\n", "straight_through needs gradient = 'finite_difference'"),
    ("[glsr]\ncalibration_scale = 0\n", "calibration_scale must be positive"),
    ("[train]\nfirst_stage = 3\n", "first_stage must be a recipe's path"),
    ("[train]\nwidest_stretch = 0.5\n", "widest_stretch must be at least 1"),
    ("[train]\nwidest_stretch = 'x'\n", "widest_stretch must be a number"),
    ("[glsr]\nattributes = [{ name = 'range', dim = 0, calibration_scale = -2 }]\n",
     "calibration_scale of 'range' must be a positive number"),
    ("[train]\nbatch_size = 0\n", "batch_size must be at least 1"),
    ("[anneal]\nbeta_max = 0.2\n", "unknown section(s): anneal"),
    ("[data]\ncorpus = ['bach', 'music21:ryansMammoth']\n", "reserved for evaluation"),
    ("[data]\ncorpus = ['bach', 'bach']\n", "one source twice"),
    ("[data]\nwindows = 'bar'\n", "windows must be 'stride' or 'bars'"),
    ("[data]\nvocab = [80, 60]\n", "vocab must be [low, high]"),
    ("[data]\nmax_shift = -1\n", "max_shift must be"),
])
def test_bad_training_configs_are_one_line_errors(tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    done = train("--config", str(config), "--out", str(tmp_path / "run"))
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_checkpoints_carry_what_rebuilds_the_model(tiny_model_dir):
    checkpoint = load_checkpoint(Path(tiny_model_dir).parent / "run" / "best.pt")
    assert {"model", "model_args", "config", "vocab", "attributes", "state",
            "provenance"} <= set(checkpoint)
    model = load_model(checkpoint)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_init_fine_tunes_from_weights_and_refuses_another_shape(tiny_model_dir, tmp_path):
    weights = tiny_model_dir.parent / "run" / "best.pt"
    done = train("--config", str(ROOT / "presets/train/tiny.toml"), "--init", str(weights),
                 "--out", str(tmp_path / "tuned"), "--max-steps", "10")
    assert done.returncode == 0, done.stderr[-2000:]
    first = json.loads((tmp_path / "tuned" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["step"] == 10  # a new run: its own schedule from step 0
    tuned = load_checkpoint(tmp_path / "tuned" / "latest.pt")
    chain = tuned["provenance"]["init_chain"]
    assert chain[0]["checkpoint"] == str(weights)
    # the new run starts from those weights, not from a fresh initialisation
    from glsr_train.config import load
    from glsr_train.train import Runtime, make_run

    started = make_run(load(TINY), tmp_path / "again", Runtime(), None, load_checkpoint(weights))
    for name, tensor in load_checkpoint(weights)["model"].items():
        assert torch.equal(started.model.state_dict()[name], tensor), name
    wider = tmp_path / "wider.toml"
    wider.write_text((ROOT / "presets/train/tiny.toml").read_text().replace("hidden = 16",
                                                                            "hidden = 24"))
    done = train("--config", str(wider), "--init", str(weights), "--out", str(tmp_path / "w"))
    assert done.returncode == 2 and "another shape" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_metrics_line_torn_by_a_kill_does_not_stop_resume(tmp_path):
    from glsr_train.train import forget_metrics_after, read_metrics

    log = tmp_path / "metrics.jsonl"
    whole = [json.dumps({"step": step, "val_nll": 1.0}) for step in (10, 20, 30)]
    log.write_text("\n".join(whole) + '\n{"step": 40, "val_n')  # SIGKILL mid-write
    assert [r["step"] for r in read_metrics(log)] == [10, 20, 30]
    forget_metrics_after(log, 20)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [10, 20]


@pytest.mark.parametrize("recipe", sorted((ROOT / "presets" / "train").glob("*.toml")),
                         ids=lambda path: path.name)
def test_every_shipped_recipe_loads(recipe):
    """load() is the check: it raises ConfigError on any bad value (a bad recipe fails here)."""
    from glsr_train.config import load

    config = load(recipe)
    assert config.train.max_steps >= 1 and config.data.seq_len >= 1
