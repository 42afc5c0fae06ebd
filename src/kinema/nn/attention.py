"""Attention: one `scaled_dot_product_attention` call, and the multi-head layer around it.

Axis-agnostic by design: callers fold whatever axes they attend over into L (all space-time
tokens for the DiT; `b c t h w -> (b h w) t c` for temporal attention in a U-Net).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from kinema.nn.norms import RMSNorm
from kinema.nn.rope import Rope, apply_rope


def attention(q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
    """softmax(q k^T / sqrt(d) + bias) v over the keys that `mask` keeps.

    q (B, heads, L, d); k, v (B, heads, S, d); mask (B, S) bool, True = attend to this key;
    bias: additive float, broadcastable to (B, heads, L, S), finite. Returns (B, heads, L, d).
    A batch row whose keys are all masked returns zeros (SDPA alone would return NaN).
    """
    if mask is None:
        attn_mask = None if bias is None else bias.to(q.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    mask = mask.to(torch.bool)
    any_key = mask.any(dim=-1)  # (B,)
    # Rows with no key to keep attend to everything (finite), then get zeroed below.
    keep = (mask | ~any_key[:, None])[:, None, None, :]  # (B, 1, 1, S)
    if bias is None:
        attn_mask = keep
    else:
        attn_mask = bias.to(q.dtype).masked_fill(~keep, float("-inf"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    return out * any_key[:, None, None, None].to(out.dtype)


class Attention(nn.Module):
    """Multi-head self- or cross-attention with optional q/k RMSNorm and rotary embedding.

    Self-attention when `context_dim` is None (context defaults to x), cross-attention from x
    to a `context_dim`-wide context otherwise. `qk_norm` applies RMSNorm over the full q and k
    vectors (all heads together) before splitting heads, as Wan 2.1 does (norm_q / norm_k).
    Parameter names (to_q, to_k, to_v, to_out, norm_q, norm_k) follow diffusers' WanAttention,
    except that diffusers' `to_out` is a ModuleList whose `to_out.0` is this `to_out`.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        context_dim: int | None = None,
        qk_norm: bool = True,
        bias: bool = True,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = dim // heads
        kv_dim = dim if context_dim is None else context_dim
        self.to_q = nn.Linear(dim, dim, bias=bias)
        self.to_k = nn.Linear(kv_dim, dim, bias=bias)
        self.to_v = nn.Linear(kv_dim, dim, bias=bias)
        self.to_out = nn.Linear(dim, dim, bias=bias)
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        *,
        bias: Tensor | None = None,
        rope: Rope | None = None,
    ) -> Tensor:
        """x (B, L, dim); context (B, S, context_dim) or None (= x); context_mask (B, S) bool;
        bias broadcastable to (B, heads, L, S); rope from `kinema.nn.rope.rope_3d` (L tokens).
        Returns (B, L, dim)."""
        ctx = x if context is None else context
        q = self.norm_q(self.to_q(x))
        k = self.norm_k(self.to_k(ctx))
        v = self.to_v(ctx)
        q, k, v = (rearrange(z, "b l (h d) -> b h l d", h=self.heads) for z in (q, k, v))
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        out = attention(q, k, v, mask=context_mask, bias=bias)  # (B, heads, L, d)
        return self.to_out(rearrange(out, "b h l d -> b l (h d)"))
