"""The GLSR-VAE of Hadjeres, Nielsen and Pachet (2017): RNN encoder, RNN decoder fed z
(at the first step as in the paper, or at every step).

Shapes: B batch, L steps, K tokens, d latent size, H hidden units.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


class GLSRVAE(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int, seq_len: int):
        super().__init__()
        self.config, self.vocab_size, self.seq_len = config, vocab_size, seq_len
        args = config
        directions = 2 if args.bidirectional else 1
        self.embed = nn.Embedding(vocab_size, args.embed_dim)
        self.encoder = nn.LSTM(
            args.embed_dim, args.hidden, args.layers, batch_first=True,
            dropout=args.dropout if args.layers > 1 else 0.0, bidirectional=args.bidirectional,
        )
        self.to_mu = nn.Linear(directions * args.hidden, args.latent_dim)
        self.to_logvar = nn.Linear(directions * args.hidden, args.latent_dim)
        nn.init.constant_(self.to_logvar.bias, args.logvar_bias)
        # Decoder input at step t is [z * m_t, m_t] with m_0 = 1 and m_t = 0 after (paper, Eq. 10).
        step_features = seq_len if args.step_inputs else 0
        self.decoder = nn.LSTM(
            args.latent_dim + 1 + step_features, args.hidden, args.layers, batch_first=True,
            dropout=args.dropout if args.layers > 1 else 0.0,
        )
        self.to_logits = nn.Linear(args.hidden, vocab_size)
        for lstm in (self.encoder, self.decoder):
            add_forget_bias(lstm, args.forget_bias)

    def parts(self, name: str) -> list[nn.Module]:
        """The modules of one of config.FREEZABLE's parts."""
        return {"encoder": [self.embed, self.encoder, self.to_mu, self.to_logvar],
                "decoder": [self.decoder], "output": [self.to_logits]}[name]

    def freeze(self, names: list[str]) -> None:
        """Hold the named parts' weights still (no gradient, so no update)."""
        for name in names:
            for module in self.parts(name):
                module.requires_grad_(False)

    def shape(self) -> dict:
        """What rebuilds this model (a checkpoint's ``model_args``)."""
        return {"vocab_size": self.vocab_size, "seq_len": self.seq_len, **asdict(self.config)}

    @classmethod
    def of_shape(cls, shape: dict) -> GLSRVAE:
        rest = {k: v for k, v in shape.items() if k not in ("vocab_size", "seq_len")}
        return cls(ModelConfig(**rest), shape["vocab_size"], shape["seq_len"])

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, L) int64 -> mu (B, d), logvar (B, d)."""
        _, (h_n, _) = self.encoder(self.embed(tokens))  # h_n (layers * dirs, B, H)
        directions = 2 if self.config.bidirectional else 1
        last = h_n[-directions:].transpose(0, 1).reshape(tokens.shape[0], -1)  # (B, dirs * H)
        return self.to_mu(last), self.to_logvar(last)

    def decoder_inputs(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, d) -> (B, L, d + 1 [+ L]): z and the mask 1 at step 0, zeros after.

        With ``z_every_step`` z stays in the input at every step (the mask still marks step 0):
        the decoder need not carry the phrase through 32 steps of its state. With
        ``step_inputs`` a one-hot of the step follows, so the decoder need not count steps to
        know where the beats fall. Each step's distribution still depends on z only, so the
        attribute expectations stay exact.
        """
        batch, length = z.shape[0], self.seq_len
        if self.config.z_every_step:
            mask = z.new_zeros(batch, length, 1)
            mask[:, 0] = 1.0
            inputs = torch.cat([z.unsqueeze(1).expand(batch, length, z.shape[1]), mask], dim=2)
        else:
            first = torch.cat([z, z.new_ones(batch, 1)], dim=1).unsqueeze(1)  # (B, 1, d + 1)
            rest = z.new_zeros(batch, length - 1, z.shape[1] + 1)
            inputs = torch.cat([first, rest], dim=1)
        if not self.config.step_inputs:
            return inputs
        steps = torch.eye(length, dtype=z.dtype, device=z.device)  # (L, L)
        return torch.cat([inputs, steps.unsqueeze(0).expand(batch, length, length)], dim=2)

    def decode(self, z: torch.Tensor, twice_differentiable: bool = False) -> torch.Tensor:
        """z (B, d) -> logits (B, L, K), one independent distribution per step.

        ``twice_differentiable`` runs the LSTM step by step in plain tensor ops, so that
        autograd can differentiate its gradient again on every device (cuDNN cannot).
        """
        inputs = self.decoder_inputs(z)
        if twice_differentiable:
            hidden = unrolled_lstm(self.decoder, inputs)
        else:
            hidden, _ = self.decoder(inputs)  # (B, L, H)
        return self.to_logits(hidden)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Argmax-free reconstruction logits of the posterior means (for export and checks)."""
        mu, _ = self.encode(tokens)
        return self.decode(mu)


def state_for_phrase(state: dict, model: GLSRVAE, bar_from: int, bar_to: int) -> dict:
    """``state`` (a model of another phrase length) with its decoder's step one-hots laid onto
    ``model``'s steps by position in the bar: step s of the new phrase takes the column of the
    same bar and the same 16th in the old one (bar_from, bar_to: steps per bar, old and new).
    Every other weight is independent of the phrase length."""
    if not model.config.step_inputs:
        return state
    key = "decoder.weight_ih_l0"
    weights = state[key]  # (4H, d + 1 + L_old)
    first = model.config.latent_dim + 1
    old_len = weights.shape[1] - first
    steps = torch.arange(model.seq_len)
    source = (steps // bar_to * bar_from + steps % bar_to).clamp(max=old_len - 1)  # (L_new,)
    return {**state, key: torch.cat([weights[:, :first], weights[:, first + source]], dim=1)}


@torch.no_grad()
def add_forget_bias(lstm: nn.LSTM, value: float) -> None:
    """Shift the forget gates (second quarter of each bias) by ``value``."""
    for name, bias in lstm.named_parameters():
        if name.startswith("bias_ih"):
            hidden = bias.shape[0] // 4
            bias[hidden: 2 * hidden] += value


def unrolled_lstm(lstm: nn.LSTM, inputs: torch.Tensor) -> torch.Tensor:
    """The same computation as ``lstm(inputs)[0]`` (batch_first, unidirectional) step by step."""
    layer_input = inputs  # (B, L, in)
    for layer in range(lstm.num_layers):
        w_ih = getattr(lstm, f"weight_ih_l{layer}")
        w_hh = getattr(lstm, f"weight_hh_l{layer}")
        bias = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
        projected = layer_input @ w_ih.T + bias  # (B, L, 4H), all steps at once
        h = inputs.new_zeros(inputs.shape[0], lstm.hidden_size)
        c = torch.zeros_like(h)
        outputs = []
        for step in range(inputs.shape[1]):
            gates = projected[:, step] + h @ w_hh.T
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        layer_input = torch.stack(outputs, dim=1)  # (B, L, H)
        if layer < lstm.num_layers - 1 and lstm.training and lstm.dropout > 0:
            layer_input = F.dropout(layer_input, lstm.dropout, training=True)
    return layer_input


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per latent dim, (B, d)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
