"""PyTorch range predictors and the metamodel, shaped for clean ONNX/TorchScript export."""

from __future__ import annotations

import torch
from torch import nn


class GRURange(nn.Module):
    """(B, T, F) -> (B, 2H) future range in ATR units (softplus: ranges are positive)."""

    def __init__(self, n_features: int, n_outputs: int, hidden: int = 48) -> None:
        super().__init__()
        self.gru = nn.GRU(n_features, hidden, num_layers=1, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_outputs)
        )

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        # An explicit zero h0 keeps the batch dimension dynamic in the exported graph; new_zeros
        # takes its device from `seq` when traced (torch.zeros(device=seq.device) bakes in "cpu",
        # and the TorchScript model then fails on a GPU).
        h0 = seq.new_zeros((1, seq.shape[0], self.gru.hidden_size))
        _, last = self.gru(seq, h0)
        return nn.functional.softplus(self.head(last[-1]))


class TransformerRange(nn.Module):
    """Attention over the window: (B, T, F) -> (B, 2H)."""

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        window: int,
        d_model: int = 32,
        heads: int = 4,
        layers: int = 1,
    ) -> None:
        super().__init__()
        self.project = nn.Linear(n_features, d_model)
        self.position = nn.Parameter(torch.zeros(1, window, d_model))
        layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=2 * d_model, dropout=0.1, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(2 * d_model, n_outputs)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        x = self.encoder(self.project(seq) + self.position)
        pooled = torch.cat([x[:, -1], x.mean(dim=1)], dim=1)
        return nn.functional.softplus(self.head(pooled))


class MetaModel(nn.Module):
    """Logistic regression over the base models' outputs: P(the chosen trade wins).

    Direction comes from the TP/SL classifiers (long when P(long wins) >= P(short wins)); the
    confidence is calibrated by construction (log-loss) and checked by the model card.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n_range: int, n_context: int) -> None:
        super().__init__()
        self.n_inputs = 2 * n_range + 2 + n_context + 1
        self.linear = nn.Linear(self.n_inputs, 1)
        self.register_buffer("mean", torch.zeros(self.n_inputs))
        self.register_buffer("std", torch.ones(self.n_inputs))

    @staticmethod
    def assemble(
        gru: torch.Tensor,
        tf: torch.Tensor,
        p_long: torch.Tensor,
        p_short: torch.Tensor,
        ctx: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        long_win, short_win = p_long[:, 1:2], p_short[:, 1:2]
        direction = torch.where(
            long_win >= short_win, torch.ones_like(long_win), -torch.ones_like(long_win)
        )
        x = torch.cat([gru, tf, long_win, short_win, ctx, direction], dim=1)
        return x, direction

    def forward(
        self,
        gru: torch.Tensor,
        tf: torch.Tensor,
        p_long: torch.Tensor,
        p_short: torch.Tensor,
        ctx: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, direction = self.assemble(gru, tf, p_long, p_short, ctx)
        return self.score(x), direction

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """P(win) from assembled inputs."""
        out: torch.Tensor = torch.sigmoid(self.linear((x - self.mean) / self.std))
        return out
