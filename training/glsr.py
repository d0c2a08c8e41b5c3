"""Differentiable attribute expectations g(z) and the Geodesic Latent Space Regularization.

Under the factorised decoder p(x | z) = prod_t p(x_t | z), attributes that are sums over steps
have closed-form expectations, e.g. the number of played notes g(z) = sum_t P(x_t is a pitch | z).
GLSR (paper, Eq. 5-6) asks dg_i/dz_{dim_i} ~ N(mu_i, sigma_i): moving along latent dim i changes
attribute i at a fixed positive rate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from glsr_live.tokens import BLACK_PITCH_CLASSES, Vocabulary

Expectation = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def pitch_mask(vocab: Vocabulary) -> torch.Tensor:
    """(K,) 1.0 on pitch tokens."""
    return torch.tensor([0.0, 0.0] + [1.0] * (vocab.size - 2))


def expected_notes(probs: torch.Tensor, pitches: torch.Tensor) -> torch.Tensor:
    """probs (B, L, K) -> (B,) expected number of onsets."""
    return (probs * (pitches >= 0)).sum(dim=(1, 2))


def expected_register(probs: torch.Tensor, pitches: torch.Tensor) -> torch.Tensor:
    """probs (B, L, K) -> (B,) expected pitch sum over expected onsets (mean played pitch)."""
    onset = probs * (pitches >= 0)
    return (onset * pitches.clamp(min=0)).sum(dim=(1, 2)) / onset.sum(dim=(1, 2)).clamp(min=1e-3)


def expected_range(probs: torch.Tensor, pitches: torch.Tensor) -> torch.Tensor:
    """probs (B, L, K) -> (B,) E[highest - lowest played pitch | some note is played].

    Exact under the factorised decoder: the highest pitch is at most p when no step plays a
    pitch above p, so P(max <= p) = prod_t (1 - P(x_t is a pitch above p)); likewise for the
    lowest. Pitch tokens are 2.. in rising pitch order.
    """
    onset = probs[..., 2:]  # (B, L, P)
    below_or_at = onset.cumsum(dim=-1)  # (B, L, P) P(x_t is a pitch <= p)
    above = onset.sum(dim=-1, keepdim=True) - below_or_at  # (B, L, P) P(x_t is a pitch > p)
    none_above = _product_over_steps(1 - above)  # (B, P) P(max <= p), "no note" included
    none_at_or_below = _product_over_steps(1 - below_or_at)  # (B, P) P(min > p)
    silent = _product_over_steps(1 - onset.sum(dim=-1, keepdim=True))[:, 0]  # (B,)
    values = pitches[2:].to(probs.dtype)  # (P,)
    max_mass = torch.diff(none_above, dim=-1, prepend=silent[:, None])  # (B, P) P(max = p)
    min_mass = -torch.diff(none_at_or_below, dim=-1,
                           prepend=torch.ones_like(silent)[:, None])  # (B, P) P(min = p)
    spread = ((max_mass - min_mass) * values).sum(dim=-1)  # E[max - min; some note]
    return spread / (1 - silent).clamp(min=1e-3)


def _product_over_steps(factors: torch.Tensor) -> torch.Tensor:
    """factors (B, L, P) in [0, 1] -> (B, P) their product over steps, in log space."""
    return factors.clamp(min=1e-12).log().sum(dim=1).exp()


def expected_black_keys(probs: torch.Tensor, pitches: torch.Tensor) -> torch.Tensor:
    black = torch.zeros_like(pitches, dtype=probs.dtype)
    for pitch_class in BLACK_PITCH_CLASSES:
        black = black + ((pitches >= 0) & (pitches % 12 == pitch_class)).to(probs.dtype)
    return (probs * black).sum(dim=(1, 2))


NEEDS_NOTES = {"register", "range"}  # attributes without a value for a window without notes

EXPECTATIONS: dict[str, Expectation] = {
    "notes": expected_notes,
    "register": expected_register,
    "range": expected_range,
    "black_keys": expected_black_keys,
}


@dataclass
class RegularisedAttribute:
    """Attribute ``name`` bound to latent ``dim`` with prior N(mu, sigma) on dg/dz_dim.

    ``centre`` is the training data's mean attribute: the value calibration maps to z_dim = 0.
    """

    name: str
    dim: int
    mu: float
    sigma: float
    centre: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in EXPECTATIONS:
            raise ValueError(f"no differentiable expectation for attribute {self.name!r}; "
                             f"known: {', '.join(EXPECTATIONS)}")
        if self.sigma <= 0:
            raise ValueError(f"sigma of {self.name!r} must be positive")


def attribute_gradients(
    decode: Callable[[torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    attributes: list[RegularisedAttribute],
    pitches: torch.Tensor,
    create_graph: bool = True,
    sharpness: Sequence[float] | None = None,
) -> torch.Tensor:
    """(B, n_attributes) exact dg_a/dz_{dim_a} at every z (B, d), by autograd.

    Each sample's g depends on its own z only, so the gradient of the batch sum w.r.t. z gives
    every per-sample gradient in one backward pass per attribute. Attribute a's expectation is
    taken under softmax(logits / sharpness[a]) (1.0 each when not given).
    """
    if not z.requires_grad:
        z = z.requires_grad_(True)
    logits = decode(z)  # (B, L, K)
    columns = []
    for index, (attribute, temperature) in enumerate(
            zip(attributes, temperatures(attributes, sharpness), strict=True)):
        g = EXPECTATIONS[attribute.name](torch.softmax(logits / temperature, dim=-1), pitches)
        keep = create_graph or index < len(attributes) - 1
        (grad,) = torch.autograd.grad(g.sum(), z, create_graph=create_graph, retain_graph=keep)
        columns.append(grad[:, attribute.dim])
    return torch.stack(columns, dim=1)


def temperatures(attributes: list[RegularisedAttribute], sharpness: Sequence[float] | None
                 ) -> list[float]:
    """One softmax temperature per attribute: ``sharpness`` checked for length, else 1.0s."""
    return per_attribute(1.0 if sharpness is None else sharpness, attributes, "sharpness values")


def per_attribute(value: float | Sequence[float], attributes: list[RegularisedAttribute],
                  what: str) -> list:
    """One value per attribute: a single number for all, or a sequence checked for length."""
    if isinstance(value, (int, float)):
        return [value] * len(attributes)
    if len(value) != len(attributes):
        raise ValueError(f"{len(value)} {what} for {len(attributes)} attributes")
    return list(value)


def finite_difference_gradients(
    decode: Callable[[torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    attributes: list[RegularisedAttribute],
    pitches: torch.Tensor,
    step: float = 1e-2,
    sharpness: Sequence[float] | None = None,
) -> torch.Tensor:
    """(B, n_attributes) central differences (g(z + h e) - g(z - h e)) / 2h, one decode.

    Needs no double backward (so cuDNN and mkldnn kernels serve the training backward) and
    costs one extra forward/backward of 2 * n_attributes * B samples. Error O(h^2); ``step``
    is h. Attribute a's expectation is taken under softmax(logits / sharpness[a]) (1.0 each
    when not given).
    """
    shifted = []
    for attribute in attributes:
        offset = torch.zeros_like(z)
        offset[:, attribute.dim] = step
        shifted += [z + offset, z - offset]
    logits = decode(torch.cat(shifted))  # (2 * n * B, L, K)
    columns = []
    for index, (attribute, temperature) in enumerate(
            zip(attributes, temperatures(attributes, sharpness), strict=True)):
        part = logits[2 * index * len(z): (2 * index + 2) * len(z)] / temperature
        plus, minus = expected_attribute(attribute.name, part, pitches).chunk(2)
        columns.append((plus - minus) / (2 * step))
    return torch.stack(columns, dim=1)


def expected_attribute(name: str, logits: torch.Tensor, pitches: torch.Tensor) -> torch.Tensor:
    """logits (B, L, K) -> (B,) the attribute's expectation under softmax(logits)."""
    return EXPECTATIONS[name](torch.softmax(logits, dim=-1), pitches)


GRADIENT_ESTIMATORS = {
    "exact": attribute_gradients,
    "finite_difference": finite_difference_gradients,
}


def glsr_penalty(gradients: torch.Tensor, attributes: list[RegularisedAttribute]) -> torch.Tensor:
    """-log N(grad; mu, sigma) up to a constant, (n_attributes,) mean over the batch."""
    mu = gradients.new_tensor([a.mu for a in attributes])
    sigma = gradients.new_tensor([a.sigma for a in attributes])
    return (0.5 * ((gradients - mu) / sigma).pow(2)).mean(dim=0)


def spread_along_axes(
    z: torch.Tensor, attributes: list[RegularisedAttribute], spread: float
) -> torch.Tensor:
    """Move each regularised coordinate by U(-spread, spread).

    The paper averages GLSR under q(z|x) only, which leaves the axis free to flatten where
    no posterior lies; a knob needs the slope over its whole range, so we also ask it there.
    """
    if spread <= 0:
        return z
    shifted = z.clone()
    for attribute in attributes:
        offsets = (torch.rand(z.shape[0], device=z.device) * 2 - 1) * spread
        shifted[:, attribute.dim] = shifted[:, attribute.dim] + offsets
    return shifted
