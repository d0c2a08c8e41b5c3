"""Validation during training: NLL, KL and accuracy at the posterior mean, and per axis how
well the encoder orders phrases and how monotone the played decode is along it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from glsr_live.attributes import compute
from glsr_live.model import logits_to_tokens
from glsr_live.tokens import HOLD

from .config import Config
from .dataset import Dataset
from .glsr import RegularisedAttribute
from .metrics import AXIS_SPAN, mean_row_spearman, spearman, token_accuracy
from .model import GLSRVAE, kl_per_dim

ALONG_PHRASES = 256
ALONG_OFFSETS = np.linspace(-AXIS_SPAN, AXIS_SPAN, 9)


@torch.no_grad()
def evaluate(model: GLSRVAE, windows: torch.Tensor, dataset: Dataset,
             attributes: list[RegularisedAttribute], config: Config) -> dict:
    """Validation NLL/KL at the posterior mean, token accuracy, per-dim KL, and per axis the
    encoder-side Spearman and the along-axis Spearman of the argmax decode."""
    model.eval()
    mus, logvars, predictions, nll = [], [], [], 0.0
    for batch in windows.split(1024):
        mu, logvar = model.encode(batch)
        logits = model.decode(mu)
        nll += F.cross_entropy(logits.transpose(1, 2), batch, reduction="none").sum().item()
        mus.append(mu)
        logvars.append(logvar)
        predictions.append(logits_to_tokens(logits.cpu().numpy()))  # as the runtime decodes
    mu, logvar = torch.cat(mus), torch.cat(logvars)
    kl = kl_per_dim(mu, logvar).mean(0).cpu().numpy()
    target = windows.cpu().numpy()
    # the argmax made canonical, as the runtime plays it: the same quantity glsr-eval reports
    accuracy, accuracy_nonhold = token_accuracy(np.concatenate(predictions), target, HOLD)
    result = {
        "val_nll": nll / len(windows), "val_kl": float(kl.sum()),
        "val_kl_per_dim": [round(float(k), 4) for k in kl],
        "val_recon_accuracy": accuracy, "val_recon_accuracy_nonhold": accuracy_nonhold,
    }
    result["val_objective"] = result["val_nll"] + config.schedule.beta.value * result["val_kl"]
    mu_np = mu.cpu().numpy()
    for attribute in attributes:
        values = compute(attribute.name, target, dataset.vocab, dataset.grid)
        result[f"val_spearman_{attribute.name}"] = spearman(mu_np[:, attribute.dim], values)
        result[f"val_along_{attribute.name}"] = along_axis(model, mu[:ALONG_PHRASES], attribute,
                                                           dataset)
    model.train()  # eval mode up to here: the sweeps decode as the exported model does
    return result


@torch.no_grad()
def along_axis(model: GLSRVAE, mu: torch.Tensor, attribute: RegularisedAttribute,
               dataset: Dataset) -> float:
    """Mean per-phrase Spearman between the axis position and the attribute of the argmax
    decode (as played) along it: glsr-eval's spearman_along_axis on fewer phrases and points.
    The training objective only sees expectations, which can move with no argmax moving."""
    offsets = torch.as_tensor(ALONG_OFFSETS, dtype=mu.dtype, device=mu.device)
    z = mu[:, None, :].repeat(1, len(offsets), 1)  # (P, S, d)
    z[:, :, attribute.dim] += offsets
    logits = model.decode(z.reshape(-1, z.shape[-1]))  # (P * S, L, K)
    tokens = logits_to_tokens(logits.cpu().numpy())
    values = compute(attribute.name, tokens, dataset.vocab, dataset.grid).reshape(len(mu), -1)
    return mean_row_spearman(ALONG_OFFSETS, values)


def summary_line(record: dict) -> str:
    return (f"step {record['step']}: val nll {record['val_nll']:.2f} kl {record['val_kl']:.2f} "
            f"acc {record['val_recon_accuracy']:.3f} non-hold "
            f"{record['val_recon_accuracy_nonhold']:.3f} "
            f"spearman {prefixed(record, 'val_spearman_')} along {prefixed(record, 'val_along_')}")


def prefixed(record: dict, prefix: str) -> str:
    """'notes +0.98 register +0.95' for the record's keys that start with ``prefix``."""
    return " ".join(f"{k.removeprefix(prefix)} {v:+.2f}" for k, v in record.items()
                    if k.startswith(prefix)) or "-"
