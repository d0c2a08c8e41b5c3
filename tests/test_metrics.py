"""The numbers behind every headline: Spearman, R^2 / interpretability, reconstruction, sweeps.

Each metric is checked on a case whose answer is known by hand, through a stand-in model whose
encoder and decoder are plain numpy functions.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from glsr_train.evaluate import (
    Split,
    along_axis,
    evaluate,
    interpretability,
    knob_curve,
    reconstruction,
)
from glsr_train.glsr import RegularisedAttribute
from glsr_train.metrics import nonhold_by_events, rank, spearman, token_accuracy
from glsr_train.validation import along_axis as logged_along_axis

from glsr_live.attributes import compute
from glsr_live.tokens import HOLD, REST, Grid, Vocabulary, canonical

VOCAB, GRID = Vocabulary(57, 81), Grid()


def test_spearman_on_hand_made_cases():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spearman(x, x**3) == pytest.approx(1.0)  # any increasing map
    assert spearman(x, -np.exp(x)) == pytest.approx(-1.0)
    # ranks (1 2 3 4 5) against (2 1 4 3 5): d^2 sums to 4, rho = 1 - 6 * 4 / (5 * 24) = 0.8
    assert spearman(x, np.array([2.0, 1.0, 4.0, 3.0, 5.0])) == pytest.approx(0.8)
    assert spearman(x, np.ones(5)) == 0.0  # a constant decode: no order at all
    assert spearman(x, np.array([1.0, np.nan, 3.0, 4.0, 5.0])) == pytest.approx(1.0)
    assert rank(np.array([10.0, 20.0, 20.0, 30.0])).tolist() == [0.0, 1.5, 1.5, 3.0]


def test_token_accuracy_counts_all_steps_and_non_hold_steps():
    target = np.array([[5, HOLD, HOLD, REST], [7, HOLD, 8, HOLD]])
    predicted = np.array([[5, HOLD, 6, REST], [7, HOLD, HOLD, HOLD]])
    accuracy, nonhold = token_accuracy(predicted, target, HOLD)
    assert accuracy == pytest.approx(6 / 8)
    assert nonhold == pytest.approx(3 / 4)  # targets 5, REST, 7, 8: the 8 is missed


def test_non_hold_accuracy_is_banded_by_the_events_each_window_holds():
    sparse = np.array([2] + [HOLD] * 31)  # 1 event
    busy = np.array([2, 3] * 13 + [HOLD] * 6)  # 26 events
    missed = busy.copy()
    missed[:2] = [4, 4]  # 2 of its 26 wrong
    bands = nonhold_by_events(np.stack([sparse, missed]), np.stack([sparse, busy]), HOLD)
    assert bands == {"0-11": {"windows": 1, "nonhold": 1.0},
                     "24-32": {"windows": 1, "nonhold": pytest.approx(24 / 26)}}
    edge = np.array([2] * 12 + [HOLD] * 20)  # 12 events: the second band's first
    assert list(nonhold_by_events(edge[None], edge[None], HOLD)) == ["12-17"]


class LinearModel:
    """A stand-in model: the decoder's note count grows with z[0] by a known rule.

    decode: a window whose first round(16 + 4 * z[0]) steps (clipped to 0..32) are sixteenth
    notes at pitch 60 + round(z[1]), then rests; the other dims change nothing. A sweep step of
    0.25 adds exactly one note.
    """

    def __init__(self, latent_dim: int = 4, axes: dict | None = None):
        self.info = SimpleNamespace(vocab=VOCAB, grid=GRID, latent_dim=latent_dim,
                                    axes=axes or {}, latent=SimpleNamespace(
                                        std=np.ones(latent_dim, dtype=np.float32)))

    def decode_tokens(self, z: np.ndarray) -> np.ndarray:
        rows = []
        for code in np.atleast_2d(z):
            count = int(np.clip(round(16 + 4 * code[0]), 0, 32))
            pitch = int(np.clip(60 + round(code[1]), VOCAB.low, VOCAB.high))
            row = np.full(32, REST)
            row[:count] = pitch - VOCAB.low + 2
            rows.append(canonical(row))
        return np.stack(rows)


def test_reconstruction_scores_a_decode_that_is_known():
    model = LinearModel()
    mu = np.zeros((2, 4), dtype=np.float32)  # both decode to 16 onsets of pitch 60
    decoded = model.decode_tokens(mu)
    same = decoded[0].copy()
    other = decoded[1].copy()
    other[4] = REST  # one step of the 64 wrong
    result = reconstruction(model, Split(np.stack([same, other]), mu))
    assert result["recon_accuracy"] == pytest.approx(63 / 64)
    nonhold_targets = int((np.stack([same, other]) != HOLD).sum())
    assert result["recon_accuracy_nonhold"] == pytest.approx(1 - 1 / nonhold_targets)


def test_along_axis_is_one_on_the_notes_dim_and_zero_on_a_dead_dim():
    model = LinearModel()
    phrases = np.zeros((5, 4), dtype=np.float32)
    phrases[:, 2] = np.linspace(-1, 1, 5)  # sweeps reach z[0] = +-3: 4 to 28 notes, no clip
    on_axis = along_axis(model, phrases, 0, "notes")
    assert on_axis["spearman_along_axis"] == pytest.approx(1.0)
    assert on_axis["cross_attribute"]["register"] == 0.0  # the pitch never moves
    assert along_axis(model, phrases, 3, "notes")["spearman_along_axis"] == 0.0


def test_knob_curve_says_how_far_the_other_attributes_move_at_the_knob_ends():
    model = LinearModel()
    phrases = np.zeros((3, 4), dtype=np.float32)  # 16 notes at pitch 60 each
    notes = knob_curve(model, phrases, 0, "notes", (-1.0, 1.0))  # z[0] -1..1: 12..20 notes
    assert (notes["low_end_change"], notes["high_end_change"]) == (-4.0, 4.0)
    assert notes["other_end_changes"]["register"] == [0.0, 0.0]  # the pitch never moves
    register = knob_curve(model, phrases, 1, "register", (-2.0, 2.0))  # pitch 58..62
    assert register["other_end_changes"]["notes"] == [0.0, 0.0]
    assert register["other_end_changes"]["highest"] == [-2.0, 2.0]
    assert "register" not in register["other_end_changes"]


class LogitsModel(LinearModel):
    """The stand-in as the training loop sees it: decode(z) gives (N, L, K) torch logits."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        tokens = self.decode_tokens(z.numpy())
        return torch.from_numpy(np.eye(VOCAB.size, dtype=np.float32)[tokens] * 10.0)


def test_training_logs_the_along_axis_spearman_of_the_argmax_decode():
    model, data = LogitsModel(), SimpleNamespace(vocab=VOCAB, grid=GRID)
    mu = torch.zeros(5, 4)
    mu[:, 2] = torch.linspace(-1, 1, 5)
    notes_on_its_dim = RegularisedAttribute("notes", 0, 4.0, 1.0)
    assert logged_along_axis(model, mu, notes_on_its_dim, data) == pytest.approx(1.0)
    register_on_its_dim = RegularisedAttribute("register", 1, 1.0, 0.25)
    offsets = np.linspace(-3, 3, 9)  # the pitch is 60 + round(offset): -2.25 and -1.5 tie
    assert logged_along_axis(model, mu, register_on_its_dim, data) == pytest.approx(
        spearman(offsets, np.round(offsets)))
    notes_on_a_dead_dim = RegularisedAttribute("notes", 3, 4.0, 1.0)
    assert logged_along_axis(model, mu, notes_on_a_dead_dim, data) == 0.0


def test_interpretability_finds_the_dim_and_the_r2_of_a_known_latent():
    rng = np.random.default_rng(0)
    windows = LinearModel().decode_tokens(np.c_[rng.uniform(-2, 2, 4000), np.zeros((4000, 3))])
    notes = compute("notes", windows, VOCAB, GRID)
    mu = rng.normal(size=(4000, 4))
    mu[:, 2] = 0.5 * notes  # dim 2 is the note count, exactly linear
    exact = interpretability(LinearModel(), Split(windows, mu), "notes")
    assert exact == {"interpretability": pytest.approx(1.0), "interpretability_dim": 2}
    # linear plus independent noise: R^2 = var(signal) / (var(signal) + var(noise))
    noisy = mu.copy()
    noise = rng.normal(scale=0.5 * notes.std(), size=4000)
    noisy[:, 2] = 0.5 * notes + noise
    expected = (0.5 * notes).var() / ((0.5 * notes).var() + noise.var())
    scored = interpretability(LinearModel(), Split(windows, noisy), "notes")
    assert scored["interpretability_dim"] == 2
    assert scored["interpretability"] == pytest.approx(expected, abs=0.02)


def test_baseline_is_swept_along_its_own_most_informative_dim():
    rng = np.random.default_rng(1)
    windows = LinearModel().decode_tokens(np.c_[rng.uniform(-1, 1, 2000), np.zeros((2000, 3))])
    notes = compute("notes", windows, VOCAB, GRID)
    mu = rng.normal(size=(2000, 4)) * 0.2
    mu[:, 0] = (notes - 16) / 4  # the note dim of this stand-in is dim 0
    unregularised = evaluate(LinearModel(), Split(windows, mu), ["notes"], 50, None)
    entry = unregularised["attributes"]["notes"]
    assert entry["swept"] == "most informative dim" and entry["dim"] == 0
    assert entry["spearman_along_axis"] == pytest.approx(1.0)
    told = LinearModel(axes={"notes": SimpleNamespace(dim=3)})
    regularised = evaluate(told, Split(windows, mu), ["notes"], 50, None)["attributes"]["notes"]
    assert regularised["dim"] == 3 and regularised["spearman_along_axis"] == 0.0


def test_value_target_shares_count_the_phrases_whose_axis_reaches_each_value(monkeypatch):
    from glsr_train.evaluate import value_targets

    import glsr_live.axis

    monkeypatch.setattr(glsr_live.axis, "SEARCH_SPREADS", 3.5)
    monkeypatch.setattr(glsr_live.axis, "SEARCH_POINTS", 57)
    # LinearModel: 16 + 4 z0 notes; the search spans +-3.5 spreads, so from z0 = 0 it reaches
    # 2..30 notes, from z0 = 2 it reaches 10..32 (clipped at 32)
    model = LinearModel(axes={"notes": SimpleNamespace(dim=0)})
    model.info.axes = {"notes": SimpleNamespace(dim=0)}
    phrases = np.zeros((4, 4))
    phrases[2:, 0] = 2.0
    result = value_targets(model, phrases, "notes")
    assert result["shares"]["2"] == 0.5 and result["shares"]["9"] == 0.5
    assert result["shares"]["10"] == 1.0 and result["shares"]["30"] == 1.0
    assert result["shares"]["31"] == 0.5
    assert result["range_90"] == [10, 30]


def test_range_90_is_the_widest_run_of_values_met_not_the_span_over_gaps():
    from glsr_train.evaluate import widest_run

    assert widest_run([0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13]) == [2, 11]  # 1 and 12 missed
    assert widest_run([0, 1, 2, 5, 6]) == [0, 2]
    assert widest_run([7]) == [7, 7]
    assert widest_run([]) is None
