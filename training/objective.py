"""The training objective, as its formula: one function over one batch.

Shapes: B batch, L steps, K tokens, d latent size, n regularised attributes, n' altered rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .additions import anchor_penalty, calibration_penalty, restoration_loss, token_attributes
from .config import Config
from .glsr import GRADIENT_ESTIMATORS, RegularisedAttribute, glsr_penalty, spread_along_axes
from .model import GLSRVAE, kl_per_dim, reparameterise


@dataclass
class Weights:
    """The scheduled weight of each term at one step (``[schedule]``)."""

    beta: float
    glsr: float = 0.0
    calibration: float = 0.0
    restoration: float = 0.0
    anchor: float = 0.0

    @classmethod
    def at(cls, config: Config, step: int) -> Weights:
        return cls(**{name: config.weight(name, step) for name in
                      ("beta", "glsr", "calibration", "restoration", "anchor")})


@dataclass
class Batch:
    """One batch: what the encoder sees (after thinning and stretching) and what it was."""

    tokens: torch.Tensor  # (B, L) int64
    originals: torch.Tensor  # (B, L) int64, before augmentation
    altered: torch.Tensor  # (B,) bool, the rows augmentation changed


@dataclass
class Setup:
    """What the terms need that stays fixed over a run."""

    attributes: list[RegularisedAttribute]
    pitches: torch.Tensor  # (K,) each token's MIDI pitch, -1 for rest and hold
    glsr_rows: int  # rows of the batch the GLSR term is estimated on
    axis_spread: float  # GLSR also asked this far along each axis from the posterior
    gradient: str  # "exact" or "finite_difference"
    difference_step: float
    sharpness: list[float]  # per attribute: expectations under softmax(logits / this)
    calibration_scales: list[float]  # per attribute, times the calibration weight
    calibration_limit: float  # calibration targets stop at half the prior's range

    @classmethod
    def of(cls, config: Config, attributes: list[RegularisedAttribute],
           pitches: torch.Tensor, world: int = 1) -> Setup:
        """``world`` data-parallel ranks share the GLSR rows as they share the batch."""
        glsr = config.glsr
        return cls(attributes, pitches, -(-glsr.batch // world), glsr.axis_spread,
                   glsr.gradient, glsr.difference_step,
                   [glsr.option_of(a.name, "sharpness") for a in attributes],
                   [glsr.option_of(a.name, "calibration_scale") for a in attributes],
                   glsr.prior_range / 2)


@dataclass
class Losses:
    total: torch.Tensor  # () what the optimiser minimises
    terms: dict[str, torch.Tensor] = field(default_factory=dict)  # each term, unweighted
    slopes: dict[str, torch.Tensor] = field(default_factory=dict)  # mean dg_a/dz_a per axis
    weights: dict[str, float] = field(default_factory=dict)

    def logged(self) -> dict[str, float]:
        """Every term, slope and weight as a number, under the metrics log's names."""
        return {**{k: v.item() for k, v in self.terms.items()},
                **{f"slope_{k}": v.item() for k, v in self.slopes.items()}, **self.weights}


def objective(model: GLSRVAE, batch: Batch, weights: Weights, setup: Setup) -> Losses:
    """The loss of one batch, and its terms:

        L =  E_q[-log p(x | z)] + beta KL(q(z | x) || N(0, I))          the VAE
           + alpha sum_a -log N(dg_a/dz_a; mu_a, sigma_a)                GLSR (paper, Eq. 5-6)
           + gamma sum_a s_a mean_x (mu_a(x) - clip((a(x) - c_a) / mu_a))^2     calibration
           + rho E_x~[-log p(x | z~ + Delta(x, x~))]                     restoration
           + eta E_x~ |mu_free(x~) - mu_free(x)|^2                       anchor

    x (B, L) the window, x~ its thinned or stretched copy (the n' altered rows), z (B, d) a
    sample of q(z | x~); g_a(z) the decode's expected attribute a (``glsr.EXPECTATIONS``),
    its slope taken at ``glsr_rows`` samples moved up to ``axis_spread`` along each axis;
    a(x) the window's attribute, c_a its training mean, Delta the move along each axis that
    calibration puts between x~ and x; mu_free the code off the regularised dims (x's held
    fixed). Terms beyond the paper: ``additions.py``. Without attributes, the VAE alone.
    """
    mu, logvar = model.encode(batch.tokens)  # (B, d) each
    z = reparameterise(mu, logvar)
    nll = reconstruction_nll(model.decode(z), batch.tokens)
    kl = kl_per_dim(mu, logvar).sum(1).mean()
    losses = Losses(nll + weights.beta * kl, {"nll": nll, "kl": kl}, weights={"beta": weights.beta})
    if not setup.attributes:
        return losses
    if weights.glsr > 0:
        losses.total = losses.total + weights.glsr * glsr_term(model, z, setup, losses)
    losses.weights["alpha"] = weights.glsr
    if weights.calibration > 0:
        calibration = calibration_term(mu, batch.tokens, setup)
        losses.terms["calib"] = calibration
        losses.total = losses.total + weights.calibration * calibration
    if bool(batch.altered.any()):
        losses.total = losses.total + altered_rows_terms(model, mu, z, batch, weights, setup,
                                                         losses)
    return losses


def reconstruction_nll(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """logits (B, L, K), tokens (B, L) -> (): -log p(x | z) summed over steps, batch mean."""
    return F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none").sum(1).mean()


def glsr_term(model: GLSRVAE, z: torch.Tensor, setup: Setup, losses: Losses) -> torch.Tensor:
    """(): the paper's GLSR penalty summed over attributes; each attribute's penalty and mean
    slope go to ``losses``."""
    rows = torch.randperm(len(z), device=z.device)[: setup.glsr_rows]
    moved = spread_along_axes(z[rows], setup.attributes, setup.axis_spread)
    estimator = GRADIENT_ESTIMATORS[setup.gradient]
    exact = setup.gradient == "exact"
    unrolled = exact and moved.device.type == "cuda"  # cuDNN has no double backward
    options = {} if exact else {"step": setup.difference_step}
    gradients = estimator(lambda zz: model.decode(zz, twice_differentiable=unrolled), moved,
                          setup.attributes, setup.pitches, sharpness=setup.sharpness,
                          **options)  # (rows, n)
    penalty = glsr_penalty(gradients, setup.attributes)  # (n,)
    for attribute, value, slope in zip(setup.attributes, penalty, gradients.mean(0),
                                       strict=True):
        losses.terms[f"glsr_{attribute.name}"] = value
        losses.slopes[attribute.name] = slope
    return penalty.sum()


def calibration_term(mu: torch.Tensor, tokens: torch.Tensor, setup: Setup) -> torch.Tensor:
    """(): each axis's calibration penalty on the posterior means mu (B, d), scaled."""
    values = token_attributes(tokens, setup.attributes, setup.pitches)  # (B, n), NaN: none
    return sum(scale * calibration_penalty(mu[:, a.dim], values[:, i], a,
                                           setup.calibration_limit)
               for i, (a, scale) in enumerate(zip(setup.attributes, setup.calibration_scales,
                                                  strict=True)))


def altered_rows_terms(model: GLSRVAE, mu: torch.Tensor, z: torch.Tensor, batch: Batch,
                       weights: Weights, setup: Setup, losses: Losses) -> torch.Tensor | float:
    """rho * restoration + eta * anchor on the altered rows (n', ...) alone."""
    rows = batch.altered
    total: torch.Tensor | float = 0.0
    if weights.restoration > 0:
        restoration = restoration_loss(model.decode, z[rows], batch.tokens[rows],
                                       batch.originals[rows], setup.attributes, setup.pitches,
                                       setup.calibration_limit)
        losses.terms["restore"] = restoration
        total = total + weights.restoration * restoration
    if weights.anchor > 0:
        with torch.no_grad():
            whole, _ = model.encode(batch.originals[rows])  # (n', d)
        anchor = anchor_penalty(mu[rows], whole, setup.attributes)
        losses.terms["anchor"] = anchor
        total = total + weights.anchor * anchor
    return total
