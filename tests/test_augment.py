"""Thinning and stretching: altered windows that stay canonical token sequences."""

import numpy as np
import torch
from glsr_train.augment import note_indices, stretch_range, thin_notes
from glsr_train.config import Config
from glsr_train.dataset import DatasetSettings, build
from glsr_train.glsr import RegularisedAttribute

from glsr_live.attributes import compute
from glsr_live.tokens import REST, Grid, Vocabulary, notes_to_tokens, tokens_to_notes


def test_note_indices_follow_onsets_and_their_holds_only():
    tokens = torch.tensor([[1, 1, 0, 5, 1, 1, 0, 0, 7, 8, 1, 0]])
    assert note_indices(tokens).tolist() == [[0, 0, 0, 1, 1, 1, 0, 0, 2, 3, 3, 0]]


def chorale_windows(count: int) -> tuple[torch.Tensor, Vocabulary]:
    dataset = build(DatasetSettings(corpus="bach", seq_len=32, stride=4), progress=False)
    windows = dataset.windows("val")
    chosen = windows[np.random.default_rng(0).permutation(len(windows))[:count]]
    return torch.from_numpy(chosen), dataset.vocab


def test_thinned_windows_lose_whole_notes_and_stay_canonical():
    torch.manual_seed(0)
    windows, vocab = chorale_windows(512)
    thinned, mask = thin_notes(windows, 0.5)
    assert int(mask.sum()) == 256
    assert torch.equal(thinned[~mask], windows[~mask])  # the rest of the batch is untouched
    changed = thinned != windows
    assert torch.all(thinned[changed] == REST)
    before = compute("notes", windows[mask].numpy(), vocab, Grid())
    after = compute("notes", thinned[mask].numpy(), vocab, Grid())
    assert np.all(after <= before) and np.mean(after < before) > 0.5
    assert np.sum(after == 0) > 0 and np.sum(after <= 2) > 20  # down to the empty phrase
    for row in thinned[mask].numpy():  # decoding and re-encoding gives the same tokens
        notes = tokens_to_notes(row, vocab)
        assert np.array_equal(notes_to_tokens(notes, vocab, len(row)), row)
    unchanged, none = thin_notes(windows, 0.0)
    assert torch.equal(unchanged, windows) and not none.any()


def test_thinned_rows_are_spread_over_the_batch_and_glsr_sees_both_kinds():
    """Regression: the first rows were thinned and GLSR took the first rows, so in a batch of
    128 with 32 GLSR rows and a quarter thinned, GLSR never saw a whole window."""
    from glsr_train.objective import Losses, Setup, glsr_term

    torch.manual_seed(0)
    windows, vocab = chorale_windows(128)
    setup = Setup.of(Config(), [RegularisedAttribute("notes", 0, 1.0, 0.25)],
                     torch.from_numpy(vocab.pitch_table()))
    setup.glsr_rows, setup.axis_spread = 32, 0.0
    seen = []

    class Recording:  # the rows the GLSR term decodes: z is each row's index
        def decode(self, z, twice_differentiable=False):
            seen.append(z[:, 1].long())
            return torch.zeros(len(z), 32, vocab.size) + 0 * z.sum(1)[:, None, None]

    shares = []
    for _ in range(50):
        _, mask = thin_notes(windows, 0.25)
        z = torch.stack([torch.zeros(128), torch.arange(128.0)], 1).requires_grad_(True)
        glsr_term(Recording(), z, setup, Losses(torch.zeros(())))
        shares.append(mask[seen[-1]].float().mean().item())
    assert 0.15 < np.mean(shares) < 0.35  # about the thinned share, not 1.0
    assert min(shares) < 0.5 and max(shares) > 0.0


def test_stretched_windows_keep_rhythm_and_register_and_change_only_their_range():
    torch.manual_seed(0)
    windows, vocab = chorale_windows(512)
    pitches = torch.from_numpy(vocab.pitch_table())
    stretched, mask = stretch_range(windows, 0.5, pitches)
    assert 200 < int(mask.sum()) <= 256  # rows that would leave the vocabulary stay whole
    assert torch.equal(stretched[~mask], windows[~mask])
    onsets = windows > 1
    assert torch.equal(stretched > 1, onsets)  # every onset, hold and rest where it was
    assert torch.equal(stretched[~onsets], windows[~onsets])
    grid = Grid()
    for name, tolerance in (("notes", 0.0), ("register", 0.5)):
        before = compute(name, windows[mask].numpy(), vocab, grid)
        after = compute(name, stretched[mask].numpy(), vocab, grid)
        assert np.abs(after - before).max() <= tolerance, name
    before = compute("range", windows[mask].numpy(), vocab, grid)
    after = compute("range", stretched[mask].numpy(), vocab, grid)
    ratio = (after + 1) / (before + 1)
    assert ratio.min() < 0.75 and ratio.max() > 1.4  # both ways, about a factor 2 at most
    assert np.all(after <= 2 * before + 1)
    for row in stretched[mask].numpy():
        notes = tokens_to_notes(row, vocab)
        assert np.array_equal(notes_to_tokens(notes, vocab, len(row)), row)


def test_stretching_leaves_thinned_rows_alone_and_both_are_altered():
    from glsr_train.augment import augmented
    from glsr_train.config import AugmentConfig, Ramp

    torch.manual_seed(0)
    windows, vocab = chorale_windows(128)
    pitches = torch.from_numpy(vocab.pitch_table())
    thinned, thin_mask = thin_notes(windows, 0.25)
    _, stretch_mask = stretch_range(thinned, 0.25, pitches, exclude=thin_mask)
    assert not (thin_mask & stretch_mask).any() and int(stretch_mask.sum()) > 24
    augment = AugmentConfig(Ramp(0.25), Ramp(0.25))
    torch.manual_seed(1)
    altered, mask = augmented(windows, augment, 0, pitches)
    assert 56 <= int(mask.sum()) <= 64
    assert torch.equal(altered[~mask], windows[~mask]) and (altered[mask] != windows[mask]).any()
    untouched, none = augmented(windows, AugmentConfig(), 0, pitches)
    assert torch.equal(untouched, windows) and not none.any()


class RecordingDecoder:
    """Stands in for the VAE: records the latents it decodes, returns uniform logits."""

    def __init__(self, vocab_size: int):
        self.vocab_size, self.seen = vocab_size, None

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        self.seen = z.clone()
        return torch.zeros(z.shape[0], 32, self.vocab_size)


def test_restoration_decodes_whole_windows_from_thinned_codes_moved_up_their_axes():
    from glsr_train.additions import calibrated_position, restoration_loss, token_attributes
    from glsr_train.glsr import RegularisedAttribute

    torch.manual_seed(0)
    windows, vocab = chorale_windows(64)
    thinned, _ = thin_notes(windows, 1.0)
    pitches = torch.from_numpy(vocab.pitch_table())
    attributes = [RegularisedAttribute("notes", 0, 1.2, 0.3, centre=7.5),
                  RegularisedAttribute("register", 1, 2.0, 0.5, centre=70.0)]
    z = torch.randn(64, 4)
    decoder = RecordingDecoder(vocab.size)
    loss = restoration_loss(decoder.decode, z, thinned, windows, attributes, pitches, 3.0)
    # uniform logits: the cross-entropy of the whole windows is L * log K
    assert torch.isclose(loss, torch.tensor(32 * np.log(vocab.size), dtype=loss.dtype))
    whole, sparse = (token_attributes(t, attributes, pitches) for t in (windows, thinned))
    shift = decoder.seen - z
    for i, attribute in enumerate(attributes):
        expected = (calibrated_position(whole[:, i], attribute, 3.0)
                    - calibrated_position(sparse[:, i], attribute, 3.0)).nan_to_num(0.0)
        assert torch.allclose(shift[:, attribute.dim], expected)
    assert torch.all(shift[:, 0] >= 0) and torch.any(shift[:, 0] > 1)  # notes come back
    assert torch.equal(shift[:, 2:], torch.zeros(64, 2))  # the other coordinates stay put
    restoration_loss(decoder.decode, z, windows, windows, attributes, pitches, 3.0)
    assert torch.equal(decoder.seen, z)  # nothing thinned, nothing moved


def test_content_anchor_measures_only_the_coordinates_off_the_regularised_axes():
    from glsr_train.additions import anchor_penalty
    from glsr_train.config import ModelConfig
    from glsr_train.glsr import RegularisedAttribute
    from glsr_train.model import GLSRVAE

    torch.manual_seed(0)
    windows, vocab = chorale_windows(16)
    model = GLSRVAE(ModelConfig(latent_dim=4, embed_dim=8, hidden=16, dropout=0.0), vocab.size,
                    32)
    attributes = [RegularisedAttribute("notes", 0, 1.2, 0.3)]
    whole, _ = model.encode(windows)
    with torch.no_grad():
        fixed, _ = model.encode(windows)

    def content_anchor_penalty(model, mu, windows, attributes):
        return anchor_penalty(mu, fixed, attributes)

    tiny = 1e-10  # the encoder's no-grad pass may differ from the graph's in the last bits
    assert content_anchor_penalty(model, whole.detach(), windows, attributes) < tiny
    along_axis = whole.detach().clone()
    along_axis[:, 0] += 2.0  # thinning should move a phrase here: free of charge
    assert content_anchor_penalty(model, along_axis, windows, attributes) < tiny
    elsewhere = whole.detach().clone()
    elsewhere[:, 2] += 0.5
    penalty = content_anchor_penalty(model, elsewhere.requires_grad_(True), windows, attributes)
    assert torch.isclose(penalty, torch.tensor(0.25))
    (grad,) = torch.autograd.grad(penalty, elsewhere)
    assert torch.all(grad[:, 2] > 0) and torch.all(grad[:, 0] == 0)  # the axis is free
    assert torch.all(grad[:, [1, 3]].abs() < 1e-6)


def test_widest_stretch_sets_how_far_a_batch_is_narrowed_and_widened():
    from glsr_train.augment import augmented
    from glsr_train.config import AugmentConfig, Ramp

    windows, vocab = chorale_windows(512)
    pitches = torch.from_numpy(vocab.pitch_table())
    before = compute("range", windows.numpy(), vocab, Grid())
    wide = before >= 9  # a factor k >= 1/2 leaves such a window at least 3.5 semitones wide

    def narrowest(widest: float) -> float:
        torch.manual_seed(0)
        altered, mask = augmented(windows, AugmentConfig(stretching=Ramp(1.0),
                                                         widest_stretch=widest), 0, pitches)
        after = compute("range", altered.numpy(), vocab, Grid())
        return float(after[mask.numpy() & wide].min())

    assert narrowest(2.0) > 3  # the default: a factor of 2 each way at most
    assert narrowest(4.0) <= 3  # a quarter of the intervals: narrower than 2 allows
