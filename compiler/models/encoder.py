"""A BERT-style transformer encoder block in plain torch (post-LN, as BERT)."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["EncoderBlock"]


class EncoderBlock(nn.Module):
    """Multi-head self-attention and a GELU MLP, each followed by residual + LayerNorm.

    Parameters
    ----------
    hidden : int
        Model width (768 in BERT-base).
    heads : int
        Attention heads; must divide ``hidden``.
    intermediate : int or None
        MLP width (default 4 * hidden).
    """

    def __init__(self, hidden: int = 768, heads: int = 12, intermediate: int | None = None,
                 eps: float = 1e-12) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"'heads' ({heads}) must divide 'hidden' ({hidden})")
        self.heads, self.head_dim = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.attention_out = nn.Linear(hidden, hidden)
        self.attention_norm = nn.LayerNorm(hidden, eps=eps)
        self.intermediate = nn.Linear(hidden, intermediate or 4 * hidden)
        self.output = nn.Linear(intermediate or 4 * hidden, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(0.1)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, hidden = x.shape
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        context = torch.softmax(scores, dim=-1) @ v
        context = context.transpose(1, 2).reshape(batch, seq, hidden)
        x = self.attention_norm(x + self.dropout(self.attention_out(context)))
        mlp = self.output(nn.functional.gelu(self.intermediate(x)))
        return self.output_norm(x + self.dropout(mlp))
