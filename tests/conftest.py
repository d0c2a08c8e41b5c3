"""Shared fixtures: a deterministic stand-in model, a tiny real ONNX model, in-memory ports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glsr_live.midifile import write_notes
from glsr_live.model import ModelInfo, parse_model_json
from glsr_live.tokens import Grid, Note, Vocabulary, notes_to_tokens

ROOT = Path(__file__).resolve().parent.parent
VOCAB = Vocabulary(57, 81)


def model_json(latent_dim: int = 4) -> dict:
    return {
        "format_version": 1, "vocabulary": VOCAB.names(), "seq_len": 32, "steps_per_beat": 4,
        "beats_per_bar": 4, "latent_dim": latent_dim,
        "attributes": [
            {"name": "notes", "dim": 0, "prior": {"mu": 1.0, "sigma": 0.25},
             "range": {"min": 1, "max": 15}},
            {"name": "register", "dim": 1, "prior": {"mu": 3.0, "sigma": 0.75},
             "range": {"min": 57, "max": 81}},
        ],
        "latent_stats": {k: [v] * latent_dim for k, v in
                         (("mean", 0.0), ("std", 1.0), ("p5", -1.6), ("p95", 1.6))},
    }


def write_walk_tunes(folder: Path, count: int, seed: int, start: int, pitches: tuple[int, int],
                     leap: int, stem: str) -> None:
    """``count`` eight-bar 4/4 melodies as MIDI files: random walks from ``start`` by at most
    ``leap`` semitones within ``pitches``, in eighths to halves."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        notes, onset, pitch = [], 0, start
        while onset < 8 * 16:
            length = int(rng.choice([2, 4, 4, 8]))
            pitch = int(np.clip(pitch + rng.integers(-leap, leap + 1), *pitches))
            notes.append(Note(onset, length, pitch))
            onset += length
        write_notes(folder / f"{stem}{index:02d}.mid", notes, Grid())


class FakeModel:
    """Deterministic stand-in: z0 = notes - 8, z1 = (mean pitch - 69) / 3.

    Decoding plays round(z0 + 8) notes evenly over the phrase at pitch 69 + 3 * z1, so
    engine tests can check exactly what a knob move must do.
    """

    def __init__(self) -> None:
        self.info: ModelInfo = parse_model_json(model_json(), "fake")
        self.encoded: list[np.ndarray] = []

    def encode(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tokens = np.atleast_2d(tokens)
        self.encoded.append(tokens.copy())
        pitches = VOCAB.pitch_table()[tokens].astype(float)
        onsets = pitches >= 0
        count = onsets.sum(1)
        mean = np.where(count > 0, (pitches * onsets).sum(1) / np.maximum(count, 1), 69.0)
        mu = np.zeros((len(tokens), 4), dtype=np.float32)
        mu[:, 0], mu[:, 1] = count - 8, (mean - 69) / 3
        return mu, np.full_like(mu, -3.0)

    def decode(self, z) -> np.ndarray:
        """Logits (N, L, K) that are sure of ``decode_tokens``: 20 nats over every other token,
        far beyond any fidelity bonus, so a phrase keeper decodes the same."""
        tokens = self.decode_tokens(z)
        return 20.0 * np.eye(VOCAB.size, dtype=np.float32)[tokens]

    def decode_tokens(self, z, temperature=0.0, rng=None) -> np.ndarray:
        rows = []
        for vector in np.atleast_2d(z):
            count = int(np.clip(round(float(vector[0]) + 8), 0, 16))
            pitch = int(np.clip(round(69 + 3 * float(vector[1])), VOCAB.low, VOCAB.high))
            onsets = np.linspace(0, 32, count, endpoint=False).astype(int) if count else []
            notes = [Note(int(o), 1, pitch) for o in onsets]
            rows.append(notes_to_tokens(notes, VOCAB, 32))
        return np.stack(rows)


@pytest.fixture
def fake_model() -> FakeModel:
    return FakeModel()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny GLSR-VAE trained on real chorales for a few steps and exported to ONNX."""
    base = tmp_path_factory.mktemp("tiny")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for command in (  # this interpreter's modules, never another glsr-train found on PATH
        [sys.executable, "-m", "glsr_train.train", "--config",
         str(ROOT / "presets/train/tiny.toml"), "--out", str(base / "run"), "--no-export"],
        [sys.executable, "-m", "glsr_train.export", str(base / "run"), "--out",
         str(base / "model")],
    ):
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
    return base / "model"


class MemoryPort:
    """An in-memory mido-like port: messages queued for input, sent ones recorded."""

    def __init__(self, incoming=()):
        self.incoming = list(incoming)
        self.sent = []
        self.name = "memory"

    def iter_pending(self):
        while self.incoming:
            yield self.incoming.pop(0)

    def send(self, message):
        self.sent.append(message)

    def close(self):
        pass


@pytest.fixture
def grid() -> Grid:
    return Grid()


def open_notes(messages) -> set[tuple[int, int]]:
    """(channel, pitch) left sounding after a message stream."""
    sounding: set[tuple[int, int]] = set()
    for message in messages:
        if message.type == "note_on" and message.velocity > 0:
            sounding.add((message.channel, message.note))
        elif message.type in ("note_on", "note_off"):
            sounding.discard((message.channel, message.note))
        elif message.type == "control_change" and message.control == 123:
            sounding = {s for s in sounding if s[0] != message.channel}
    return sounding


sys.path.insert(0, str(Path(__file__).parent))


def pytest_terminal_summary(terminalreporter) -> None:
    """How often a JACK test had to restart its daemon (tests/jack.py allows one restart)."""
    from jack import RETRIES

    terminalreporter.write_sep("-", f"JACK daemon restarts: {len(RETRIES)}")
    for line in RETRIES:
        terminalreporter.write_line(line)
