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
    """One process (as before every core became the default): the runs stay comparable."""
    return subprocess.run([*GLSR_TRAIN, *args, "--processes", "1"], capture_output=True,
                          text=True, env=ENV, timeout=timeout)


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
    for part in ("train_nll", "train_kl", "train_glsr_notes", "train_calib", "train_restore",
                 "train_anchor"):
        assert math.isfinite(last[part]), part
    assert last["train_calib"] > 0 and last["train_restore"] > 0 and last["train_anchor"] > 0


def test_sigkill_mid_epoch_then_resume_continues_from_the_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    command = [*GLSR_TRAIN, "--config", str(TINY), "--out", str(run), "--max-steps", "200",
               "--no-export", "--processes", "1"]
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


STAGES = """
[[stage]]
name = "slower"
train = { lr = 1e-3, max_steps = 20 }

[[stage]]
name = "last"
train = { max_steps = 10 }
"""


def test_a_staged_recipe_trains_each_stage_from_the_one_before(tmp_path):
    """[[stage]] tables: one command trains each stage in OUT/stages/K-NAME, the last in OUT,
    each from the best.pt of the one before (init_chain, nearest first), and exports the last;
    run again, a finished stage is kept, and a stopped one goes on."""
    recipe = tmp_path / "staged.toml"
    recipe.write_text(TINY.read_text() + STAGES)
    run = tmp_path / "run"
    done = train("--config", str(recipe), "--out", str(run))
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = run / "stages" / "1-stage-1", run / "stages" / "2-slower"
    assert load_checkpoint(first / "best.pt")["state"]["step"] == 40  # tiny.toml's own length
    assert load_checkpoint(second / "best.pt")["state"]["step"] == 20
    assert load_checkpoint(second / "best.pt")["config"]["train"]["lr"] == 1e-3
    assert not (first / "model").exists() and not (second / "model").exists()
    info = json.loads((run / "model" / "model.json").read_text())
    origin = info["training"]["provenance"]
    assert origin["config_file"] == str(recipe) and origin["stage"] == "last"
    chain = origin["init_chain"]
    assert [Path(link["checkpoint"]) for link in chain] == [second / "best.pt",
                                                            first / "best.pt"]
    assert [link["stage"] for link in chain] == ["slower", "stage-1"]
    assert info["training"]["steps"] == 10
    shutil.rmtree(run / "model")
    for name in ("latest.pt", "previous.pt", "best.pt", "metrics.jsonl"):
        (run / name).unlink(missing_ok=True)
    (second / "finished").unlink()
    (second / "latest.pt").unlink()  # stopped in its second stage, one checkpoint back
    again = train("--config", str(recipe), "--out", str(run), "--no-export")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "stage 1/3" not in again.stdout and "stage 2/3" in again.stdout
    assert "resuming at step 10" in again.stdout
    assert load_checkpoint(run / "best.pt")["state"]["step"] == 10
    lost = train("--out", str(tmp_path / "nothing"), "--resume")
    assert lost.returncode == 2 and "nothing to resume" in lost.stderr


def test_from_stage_trains_only_the_later_stages_from_the_weights_given(tmp_path):
    """--from-stage NAME --init W: the stages before NAME are marked finished untrained, NAME
    starts from W, and a resume without the flag goes on from there."""
    recipe = tmp_path / "staged.toml"
    recipe.write_text(TINY.read_text() + STAGES)
    start = tmp_path / "start"
    assert train("--config", str(TINY), "--out", str(start), "--no-export",
                 "--max-steps", "10").returncode == 0
    run = tmp_path / "run"
    done = train("--config", str(recipe), "--out", str(run), "--from-stage", "slower",
                 "--init", str(start / "best.pt"), "--no-export")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "stage 1/3" not in done.stdout and "stage 2/3" in done.stdout
    first, second = run / "stages" / "1-stage-1", run / "stages" / "2-slower"
    assert (first / "finished").exists() and not (first / "best.pt").exists()
    origin = load_checkpoint(second / "best.pt")["provenance"]
    assert Path(origin["init_chain"][0]["checkpoint"]) == start / "best.pt"
    assert load_checkpoint(run / "best.pt")["state"]["step"] == 10
    for name in ("latest.pt", "previous.pt", "best.pt", "metrics.jsonl"):
        (run / name).unlink(missing_ok=True)
    (second / "finished").unlink()
    again = train("--out", str(run), "--resume", "--config", str(recipe), "--no-export")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "stage 1/3" not in again.stdout and "resuming at step 20" in again.stdout
    unknown = train("--config", str(recipe), "--out", str(tmp_path / "x"), "--from-stage",
                    "fast", "--init", str(start / "best.pt"))
    assert unknown.returncode == 2 and "the recipe's stages are 'stage-1', 'slower', 'last'" \
        in unknown.stderr
    alone = train("--config", str(recipe), "--out", str(tmp_path / "y"), "--from-stage", "last")
    assert alone.returncode == 2 and "--from-stage needs --init" in alone.stderr


def test_a_plain_command_trains_on_every_core_with_averaged_gradients(tmp_path):
    """No --processes: one rank per core (2 here), each on its share of every batch; rank 0
    alone logs; the ranks end with equal weights."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core")
    run = tmp_path / "run"
    done = subprocess.run([*GLSR_TRAIN, "--config", str(TINY), "--out", str(run),
                           "--max-steps", "20", "--no-export"], capture_output=True, text=True,
                          env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{len(os.sched_getaffinity(0))} process(es)" in done.stdout
    assert "differ by at most 0\n" in done.stdout
    assert [json.loads(line)["step"] for line in
            (run / "metrics.jsonl").read_text().splitlines()] == [20]
    bad = subprocess.run([*GLSR_TRAIN, "--config", str(TINY), "--out", str(run)],
                         capture_output=True, text=True, env=ENV, timeout=300)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1  # said once


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


def test_two_ranks_stop_together_at_the_time_limit(tmp_path):
    # each rank reads its own clock; without one clock for both, one can step on alone and wait
    # for the other's gradients forever
    run = tmp_path / "timed"
    done = subprocess.run([*GLSR_TRAIN, "--config", str(TINY), "--out", str(run), "--processes",
                           "2", "--max-steps", "100000", "--max-minutes", "0.05", "--no-export"],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "time limit" in done.stdout
    assert "parameters on 2 ranks differ by at most 0\n" in done.stdout


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
    ("[train]\nbatch_size = 'big'\n", "batch_size must be a whole number"),
    ("[train]\nbatch_size = 2.5\n", "batch_size must be a whole number"),
    ("[model]\nwidth = 3\n", "unknown key"),
    ("[train\n", "not valid TOML"),
    ("[glsr]\nattributes = [{ name = 'mood', dim = 0 }]\n", "no differentiable"),
    ("[glsr]\nsharpness = 0\n", "sharpness must be positive"),
    ("[glsr]\ngradient = 'finite_difference'\ndifference_step = 0\n",
     "difference_step must be positive"),
    ("[glsr]\ngradient = 'steepest'\n", "gradient must be 'exact' or 'finite_difference'"),
    ("[glsr]\ndifference_step = 0.5\n", "difference_step needs gradient = 'finite_difference'"),
    ("[schedule]\ncalibration = -1\n", "value must be at least 0"),
    ("[schedule]\ncalibration = { value = 1, ramp = -5 }\n", "ramp must be at least 0"),
    ("[augment]\nthinning = 1.5\n", "thinning is a share of the batch"),
    ("[augment]\nstretching = 1.5\n", "stretching is a share of the batch"),
    ("[augment]\nthinning = 0.6\nstretching = 0.6\n", "share the batch: at most 1 in all"),
    ("[schedule]\nrestoration = 1.0\n", "restoration needs altered windows"),
    ("[schedule]\nanchor = 0.5\n", "anchor needs altered windows"),
    ("[schedule]\nkl = 0.5\n", "unknown key(s) in [schedule]: kl"),
    ("[schedule]\nalignment = 0.5\n", "unknown key(s) in [schedule]: alignment"),
    ("[schedule]\nbeta = { value = 0.1, sart = 3 }\n", "unknown key(s) in [schedule.beta]"),
    ("[schedule]\nbeta = 'high'\n", "must be a table"),
    ("[glsr]\nattributes = [{ name = 'notes', dim = 0, mu = 'steep' }]\n", "mu must be"),
    ("[glsr]\nattributes = [{ name = 'notes', dim = 0, sigma = 0 }]\n", "sigma must be"),
    ("[glsr]\nattributes = [{ name = 'range', dim = 0, sharpness = 'x' }]\n",
     "sharpness must be"),
    ("[glsr]\nattributes = [{ name = 'range', dim = 0, sharpness = 0 }]\n",
     "sharpness must be positive"),
    ("[glsr]\nattributes = [{ name = 'range', dim = 0, difference_step = 0.5 }]\n",
     "unknown key(s) in [glsr.attributes]: difference_step"),
    ("[glsr]\nstraight_through = true\n", "unknown key(s) in [glsr]: straight_through"),
    ("[glsr]\ncalibration_scale = 0\n", "calibration_scale must be positive"),
    ("[train]\nfirst_stage = 'a.toml'\n", "unknown key(s) in [train]: first_stage"),
    ("[augment]\nwidest_stretch = 0.5\n", "widest_stretch must be at least 1"),
    ("[augment]\nwidest_stretch = 'x'\n", "widest_stretch must be a number"),
    ("[glsr]\nattributes = [{ name = 'range', dim = 0, calibration_scale = -2 }]\n",
     "calibration_scale must be positive"),
    ("[train]\nbatch_size = 0\n", "batch_size must be at least 1"),
    ("[anneal]\nbeta_max = 0.2\n", "unknown section(s): anneal"),
    ("[data]\ncorpus = ['bach', 'music21:ryansMammoth']\n", "reserved for evaluation"),
    ("[data]\ncorpus = ['bach', 'bach']\n", "different ones"),
    ("[data]\nwindows = 'bar'\n", "windows must be 'stride' or 'bars'"),
    ("[data]\nvocab = [80, 60]\n", "vocab must be [low, high]"),
    ("[data]\nmax_shift = -1\n", "max_shift must be"),
    ("[model]\nlatent_dim = 2\n[glsr]\nattributes = [{ name = 'notes', dim = 3 }]\n",
     "outside the latent size"),
    ("[[stage]]\nname = 'b'\ntrain = { lr = -1 }\n", "stage 'b': [train] lr must be positive"),
    ("[[stage]]\nname = 'a/b'\n", "name must be a plain word"),
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
    from glsr_train.distributed import Runtime
    from glsr_train.loop import make_run

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
    from glsr_train.rundir import forget_metrics_after, read_metrics

    log = tmp_path / "metrics.jsonl"
    whole = [json.dumps({"step": step, "val_nll": 1.0}) for step in (10, 20, 30)]
    log.write_text("\n".join(whole) + '\n{"step": 40, "val_n')  # SIGKILL mid-write
    assert [r["step"] for r in read_metrics(log)] == [10, 20, 30]
    forget_metrics_after(log, 20)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [10, 20]


@pytest.mark.parametrize("recipe", sorted((ROOT / "presets" / "train").glob("*.toml")),
                         ids=lambda path: path.name)
def test_every_shipped_recipe_loads(recipe):
    """load_recipe() is the check: it raises ConfigError on any bad value."""
    from glsr_train.config import load_recipe

    for _, config in load_recipe(recipe).stages:
        assert config.train.max_steps >= 1 and config.data.seq_len >= 1


def test_a_checkpoint_of_the_layout_before_augment_still_loads():
    """The shipped models' checkpoints hold their config in the layout before [augment]:
    fine-tunes and resumes read it, to the same recipe."""
    from glsr_train.config import from_dict, load_recipe

    shipped = load_checkpoint(ROOT / "presets" / "models" / "melody" / "weights.pt")
    config = from_dict(shipped["config"])
    assert config.to_dict() == load_recipe(ROOT / "presets/train/melody.toml").final.to_dict()
