"""The terms beyond the paper, as pure tensor functions (``objective.py`` weighs them).

GLSR shapes the decoder only: it asks an attribute to grow at a steady rate along its axis,
but says nothing of where a phrase's own code lies on that axis, nor what a knob move should
keep. Each term here answers one of those, in a line:

* calibration: the encoder puts a phrase where the axis says its attribute belongs, so a
  knob's travel in spreads is a travel in attribute units (AR-VAE's interpretability);
* restoration: a thinned or stretched window, moved along its axes by the attribute it lost,
  decodes to the original (the "more notes" end learns plausible notes, not held ones);
* anchor: an altered window's code keeps the original's off the axes (the silent window is
  coded near melodies, where a knob can bring notes back).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .glsr import EXPECTATIONS, NEEDS_NOTES, RegularisedAttribute, expected_notes


def calibration_penalty(latent: torch.Tensor, attribute: torch.Tensor,
                        regularised: RegularisedAttribute, limit: float = float("inf")
                        ) -> torch.Tensor:
    """Mean squared distance of latent (B,) from where the axis puts attribute (B,): ().

    GLSR asks the decoder's attribute to grow at rate mu along the axis; the point of the axis
    that holds a phrase's own attribute is then (a - centre) / mu. Asking the encoder to put the
    phrase there makes the axis linear in the attribute (AR-VAE's interpretability) and keeps
    its spread at the data's, so a knob's range in spreads stays a range in attribute units.
    Targets are clipped to +-limit (half the prior's range): a silent phrase would otherwise sit
    so far out that no knob position brings notes back.
    """
    defined = attribute.isfinite()
    if not bool(defined.any()):
        return latent.new_zeros(())
    targets = calibrated_position(attribute[defined], regularised, limit)
    return (latent[defined] - targets).pow(2).mean()


def calibrated_position(attribute: torch.Tensor, regularised: RegularisedAttribute,
                        limit: float = float("inf")) -> torch.Tensor:
    """(B,) attribute values -> (B,) the axis points that hold them, clipped to +-limit."""
    return ((attribute - regularised.centre) / regularised.mu).clamp(-limit, limit)


def token_attributes(tokens: torch.Tensor, attributes: list[RegularisedAttribute],
                     pitches: torch.Tensor) -> torch.Tensor:
    """tokens (B, L) -> (B, n_attributes): the data's attributes (expectations at one-hot).

    NaN where the attribute is undefined (the register of a window without notes), as in
    ``glsr_live.attributes``: the two definitions must agree (tests compare them).
    """
    one_hot = torch.nn.functional.one_hot(tokens, pitches.shape[0]).to(torch.float32)
    silent = expected_notes(one_hot, pitches) == 0  # (B,)
    columns = []
    for attribute in attributes:
        values = EXPECTATIONS[attribute.name](one_hot, pitches)
        if attribute.name in NEEDS_NOTES:
            values = values.masked_fill(silent, float("nan"))
        columns.append(values)
    return torch.stack(columns, dim=1)


def restoration_loss(decode: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor,
                     altered: torch.Tensor, originals: torch.Tensor,
                     attributes: list[RegularisedAttribute], pitches: torch.Tensor,
                     limit: float) -> torch.Tensor:
    """Cross-entropy of the original windows (n, L) decoded from their altered ones' z (n, d)
    moved along each axis by how far apart calibration puts the two windows: ().

    GLSR's slope alone cannot teach a knob to bring back plausible notes where the decoder is
    sure of silence (the softmax saturates and the expected note count has no gradient); this
    cross-entropy always has one.
    """
    whole = token_attributes(originals, attributes, pitches)  # (n, n_attributes)
    changed = token_attributes(altered, attributes, pitches)
    moved = z.clone()
    for i, attribute in enumerate(attributes):
        shift = (calibrated_position(whole[:, i], attribute, limit)
                 - calibrated_position(changed[:, i], attribute, limit))
        moved[:, attribute.dim] += shift.nan_to_num(0.0)  # register of silence: no move
    logits = decode(moved)  # (n, L, K)
    return F.cross_entropy(logits.transpose(1, 2), originals, reduction="none").sum(1).mean()


def anchor_penalty(mu: torch.Tensor, whole: torch.Tensor,
                   attributes: list[RegularisedAttribute]) -> torch.Tensor:
    """Mean squared distance, off the regularised dims, of altered codes mu (n, d) from their
    whole windows' codes ``whole`` (n, d, held fixed): ()."""
    free = torch.ones(mu.shape[1], dtype=torch.bool, device=mu.device)
    free[[a.dim for a in attributes]] = False
    return (mu[:, free] - whole[:, free]).pow(2).sum(1).mean()
