"""The GLSR gradient: exact autograd against central differences, in float64."""

import numpy as np
import pytest
import torch
from glsr_train.additions import calibration_penalty, token_attributes
from glsr_train.config import ModelConfig
from glsr_train.glsr import (
    RegularisedAttribute,
    attribute_gradients,
    finite_difference_gradients,
    glsr_penalty,
)
from glsr_train.model import GLSRVAE, unrolled_lstm

from glsr_live.tokens import Vocabulary

VOCAB = Vocabulary(57, 81)
ATTRIBUTES = [RegularisedAttribute("notes", 0, 1.3, 0.3),
              RegularisedAttribute("register", 2, 3.0, 0.7)]


def small_model() -> GLSRVAE:
    torch.manual_seed(0)
    return GLSRVAE(ModelConfig(latent_dim=4, embed_dim=8, hidden=16, forget_bias=1.0,
                               dropout=0.0), VOCAB.size, 32).double().eval()


def expectation(model, z, attribute, pitches, temperature=1.0):
    from glsr_train.glsr import EXPECTATIONS

    probs = torch.softmax(model.decode(z) / temperature, -1)
    return EXPECTATIONS[attribute.name](probs, pitches)


def test_exact_gradient_matches_central_difference_float64():
    model, pitches = small_model(), torch.from_numpy(VOCAB.pitch_table())
    z = torch.randn(6, 4, dtype=torch.float64)
    exact = attribute_gradients(model.decode, z.clone(), ATTRIBUTES, pitches,
                                create_graph=False)
    h = 1e-5
    for column, attribute in enumerate(ATTRIBUTES):
        offset = torch.zeros_like(z)
        offset[:, attribute.dim] = h
        with torch.no_grad():
            numeric = (expectation(model, z + offset, attribute, pitches)
                       - expectation(model, z - offset, attribute, pitches)) / (2 * h)
        assert torch.allclose(exact[:, column], numeric, rtol=1e-6, atol=1e-9)
        assert exact[:, column].abs().max() > 1e-4  # the check is not trivially zero


def test_finite_difference_estimator_matches_exact_within_1e3_relative():
    model, pitches = small_model(), torch.from_numpy(VOCAB.pitch_table())
    z = torch.randn(8, 4, dtype=torch.float64)
    exact = attribute_gradients(model.decode, z.clone(), ATTRIBUTES, pitches,
                                create_graph=False)
    estimate = finite_difference_gradients(model.decode, z, ATTRIBUTES, pitches, step=1e-4)
    relative = ((estimate - exact).abs() / exact.abs().clamp(min=1e-8)).max()
    assert relative < 1e-3


def test_each_attribute_takes_its_expectation_at_its_own_sharpness():
    """Attribute a's gradient is that of its expectation under softmax(logits / sharpness[a]),
    by autograd and by central differences alike."""
    model, pitches = small_model(), torch.from_numpy(VOCAB.pitch_table())
    z = torch.randn(6, 4, dtype=torch.float64)
    sharpness = [1.0, 0.2]
    exact = attribute_gradients(model.decode, z.clone(), ATTRIBUTES, pitches,
                                create_graph=False, sharpness=sharpness)
    estimate = finite_difference_gradients(model.decode, z, ATTRIBUTES, pitches, step=1e-4,
                                           sharpness=sharpness)
    h = 1e-5
    for column, (attribute, temperature) in enumerate(zip(ATTRIBUTES, sharpness, strict=True)):
        offset = torch.zeros_like(z)
        offset[:, attribute.dim] = h
        with torch.no_grad():
            numeric = (expectation(model, z + offset, attribute, pitches, temperature)
                       - expectation(model, z - offset, attribute, pitches, temperature)) / (2 * h)
        assert torch.allclose(exact[:, column], numeric, rtol=1e-6, atol=1e-9)
        assert torch.allclose(estimate[:, column], numeric, rtol=1e-3, atol=1e-6)
    plain = attribute_gradients(model.decode, z.clone(), ATTRIBUTES, pitches, create_graph=False)
    assert torch.allclose(plain[:, 0], exact[:, 0])  # sharpness 1.0 is the plain softmax
    assert not torch.allclose(plain[:, 1], exact[:, 1], rtol=1e-2)  # 0.2 is not


def test_glsr_term_measures_the_secant_slope_over_the_configured_difference_step():
    """[glsr] difference_step = h: the slope is (g(z + h) - g(z - h)) / 2h, not the local one."""
    from glsr_train.config import Config
    from glsr_train.objective import Losses, Setup, glsr_term

    model, pitches = small_model(), torch.from_numpy(VOCAB.pitch_table())
    z = torch.randn(8, 4, dtype=torch.float64)
    attribute = ATTRIBUTES[:1]
    config = Config()
    config.glsr.gradient, config.glsr.axis_spread, config.glsr.batch = "finite_difference", 0, 8
    slopes = {}
    for step in (1e-2, 3.0):
        config.glsr.difference_step = step
        losses = Losses(torch.zeros(()))
        with torch.no_grad():
            glsr_term(model, z, Setup.of(config, attribute, pitches), losses)
        slopes[step] = losses.logged()["slope_notes"]
    offset = torch.zeros_like(z)
    offset[:, 0] = 3.0
    with torch.no_grad():
        secant = (expectation(model, z + offset, attribute[0], pitches)
                  - expectation(model, z - offset, attribute[0], pitches)) / 6.0
    assert slopes[3.0] == pytest.approx(secant.mean().item(), rel=1e-9)
    assert slopes[1e-2] != pytest.approx(slopes[3.0], rel=0.1)  # the step was used


def test_penalty_trains_the_slope_towards_its_prior_on_the_unrolled_decoder():
    """Double backward through the unrolled LSTM (the CUDA path) moves the slope to mu."""
    model = small_model().float().train()
    pitches = torch.from_numpy(VOCAB.pitch_table())
    attribute = [RegularisedAttribute("notes", 0, 2.0, 0.5)]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    z = torch.randn(32, 4)
    decode = lambda zz: model.decode(zz, twice_differentiable=True)  # noqa: E731
    first = attribute_gradients(decode, z.clone(), attribute, pitches).mean().item()
    for _ in range(60):
        loss = glsr_penalty(attribute_gradients(decode, z.clone(), attribute, pitches),
                            attribute).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    last = attribute_gradients(decode, z.clone(), attribute, pitches).mean().item()
    assert abs(last - 2.0) < abs(first - 2.0) / 2


def test_unrolled_lstm_equals_torch_lstm():
    model = small_model()
    inputs = model.decoder_inputs(torch.randn(3, 4, dtype=torch.float64))
    expected, _ = model.decoder(inputs)
    assert torch.allclose(unrolled_lstm(model.decoder, inputs), expected, atol=1e-12)


def test_calibration_puts_the_latent_where_the_axis_slope_says():
    notes = RegularisedAttribute("notes", 0, mu=1.5, sigma=0.4, centre=7.0)
    attribute = torch.tensor([4.0, 7.0, 8.5, 11.5])
    calibrated = torch.tensor([-2.0, 0.0, 1.0, 3.0])  # (a - 7) / 1.5
    assert calibration_penalty(calibrated, attribute, notes) == 0
    assert torch.isclose(calibration_penalty(calibrated + 0.5, attribute, notes),
                         torch.tensor(0.25))
    latent = torch.zeros(4, requires_grad=True)
    for _ in range(200):  # gradient descent on the term alone reaches the calibrated points
        (grad,) = torch.autograd.grad(calibration_penalty(latent, attribute, notes), latent)
        latent = (latent - 0.5 * grad).detach().requires_grad_(True)
    assert torch.allclose(latent, calibrated, atol=1e-4)
    clipped = calibration_penalty(torch.tensor([-2.0, 0.0, 1.0, 2.5]), attribute, notes, 2.5)
    assert clipped == 0  # 11.5 notes sit at the limit


def test_an_attributes_own_calibration_scale_weighs_its_calibration_alone():
    """[glsr.attributes] calibration_scale = k: that axis's calibration term is k times what
    it would be; the other axes keep [glsr]'s scale."""
    from glsr_train.config import AttributeConfig, Config
    from glsr_train.objective import Setup, calibration_term

    pitches = torch.from_numpy(VOCAB.pitch_table())
    tokens = torch.randint(0, VOCAB.size, (16, 32))
    mu = torch.randn(16, 4)
    attributes = [RegularisedAttribute("notes", 0, 1.3, 0.3, centre=8.0),
                  RegularisedAttribute("register", 2, 3.0, 0.7, centre=69.0)]
    config = Config()
    values = token_attributes(tokens, attributes, pitches)
    each = [calibration_penalty(mu[:, a.dim], values[:, i], a, config.glsr.prior_range / 2)
            for i, a in enumerate(attributes)]
    for scales in ((None, None), (None, 5.0), (0.5, None)):
        config.glsr.attributes = [AttributeConfig(a.name, a.dim, calibration_scale=s)
                                  for a, s in zip(attributes, scales, strict=True)]
        total = calibration_term(mu, tokens, Setup.of(config, attributes, pitches))
        expected = sum((s or 1.0) * p for s, p in zip(scales, each, strict=True))
        assert torch.isclose(total, expected), scales


def test_token_attributes_are_the_data_attributes():
    from glsr_live.attributes import compute
    from glsr_live.tokens import Grid

    pitches = torch.tensor([-1, -1] + list(range(57, 82)))
    tokens = torch.randint(0, VOCAB.size, (6, 32))
    values = token_attributes(tokens, ATTRIBUTES, pitches)  # (6, 2)
    notes = compute("notes", tokens.numpy(), VOCAB, Grid())
    assert torch.allclose(values[:, 0], torch.as_tensor(notes, dtype=torch.float32))


def test_torch_and_numpy_attributes_agree_silence_included():
    """One definition of each regularised attribute: the differentiable expectations at one-hot
    tokens equal glsr_live.attributes, NaN (undefined) where a window has no note."""
    from glsr_train.glsr import EXPECTATIONS, RegularisedAttribute

    from glsr_live.attributes import compute
    from glsr_live.tokens import REST, Grid, canonical

    pitches = torch.from_numpy(VOCAB.pitch_table())
    rng = np.random.default_rng(3)
    rows = [canonical(rng.integers(0, VOCAB.size, 32)) for _ in range(40)]
    rows += [np.full(32, REST), canonical(np.r_[[REST] * 31, [9]])]  # silence, one late note
    tokens = np.stack(rows)
    every = [RegularisedAttribute(name, i, 1.0, 0.25) for i, name in enumerate(EXPECTATIONS)]
    values = token_attributes(torch.from_numpy(tokens), every, pitches).numpy()
    for i, attribute in enumerate(every):
        expected = compute(attribute.name, tokens, VOCAB, Grid())
        np.testing.assert_allclose(values[:, i], expected, rtol=1e-5, equal_nan=True,
                                   err_msg=attribute.name)
    assert np.isnan(values[40, 1]) and values[41, 1] == VOCAB.pitch_table()[9]


def test_calibration_ignores_windows_without_a_register():
    register = RegularisedAttribute("register", 1, 2.0, 0.5, centre=70.0)
    latent = torch.tensor([0.0, 1.0, -5.0], requires_grad=True)
    values = torch.tensor([70.0, 72.0, float("nan")])  # the third window is silent
    penalty = calibration_penalty(latent, values, register, 3.0)
    assert torch.isclose(penalty, torch.tensor(0.0))  # the silent one is not pulled to -3
    (grad,) = torch.autograd.grad(penalty, latent)
    assert grad[2] == 0 and torch.isfinite(grad).all()


def test_expected_range_is_the_mean_range_of_sampled_phrases():
    """E[highest - lowest | some note] in closed form, against 200,000 phrases drawn from the
    same per-step distributions (many steps silent, so 'no note' matters too)."""
    from glsr_train.glsr import expected_range

    from glsr_live.attributes import pitch_range

    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 8, VOCAB.size, dtype=torch.float64, generator=generator) * 2
    logits[1, :, 0] += 7.0  # the second phrase mostly rests: P(no note) is about a half
    probs = torch.softmax(logits, dim=-1)
    pitches = torch.from_numpy(VOCAB.pitch_table())
    expected = expected_range(probs, pitches)
    for row in range(2):
        samples = torch.distributions.Categorical(probs=probs[row]).sample((200_000,)).numpy()
        sampled = pitch_range(samples, VOCAB)
        assert abs(expected[row].item() - np.nanmean(sampled)) < 0.05, row


def test_the_decoder_sees_z_at_the_first_step_or_at_every_step():
    """The paper's decoder input is [z, 1] at step 0 and zeros after; with z_every_step it is
    [z, 0] at every later step. Either way each step depends on z alone, so the unrolled LSTM
    (for double backward) must decode exactly what torch's LSTM decodes."""
    z = torch.randn(3, 4, dtype=torch.float64)
    for every_step in (False, True):
        torch.manual_seed(0)
        model = GLSRVAE(ModelConfig(latent_dim=4, embed_dim=8, hidden=16,
                                    z_every_step=every_step), VOCAB.size, 32).double().eval()
        inputs = model.decoder_inputs(z)  # (B, L, d + 1)
        assert torch.equal(inputs[:, 0], torch.cat([z, torch.ones(3, 1, dtype=z.dtype)], 1))
        later = inputs[:, 1:, :4]
        assert torch.equal(later, z[:, None].expand_as(later)) if every_step else not later.any()
        assert not inputs[:, 1:, 4].any()
        assert torch.allclose(model.decode(z), model.decode(z, twice_differentiable=True))


def test_step_inputs_append_a_one_hot_of_each_step_to_the_decoder_input():
    """With step_inputs the decoder also sees which of the L steps it is decoding (the mask and
    z stay as before), and the unrolled LSTM still decodes exactly what torch's does."""
    z = torch.randn(3, 4, dtype=torch.float64)
    torch.manual_seed(0)
    model = GLSRVAE(ModelConfig(latent_dim=4, embed_dim=8, hidden=16, z_every_step=True,
                                step_inputs=True), VOCAB.size, 8).double().eval()
    inputs = model.decoder_inputs(z)  # (B, L, d + 1 + L)
    assert inputs.shape == (3, 8, 4 + 1 + 8)
    assert torch.equal(inputs[:, :, :4], z[:, None].expand(3, 8, 4))
    assert torch.equal(inputs[1, :, 5:], torch.eye(8, dtype=z.dtype))
    assert torch.allclose(model.decode(z), model.decode(z, twice_differentiable=True))
