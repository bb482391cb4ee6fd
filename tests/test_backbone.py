"""Backbones: bidirectional decoders of several families, encoders, the LENS tokenizer."""

import numpy as np
import pytest
import torch
from transformers import AutoModel

from lens_embed import build_lens_model, encode, load_lens_model
from lens_embed.models.backbone import appends_eos, prepare_tokenizer
from tiny_models import build_decoder, build_tokenizer


def hidden_states(model, ids):
    with torch.no_grad():
        return model(
            input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long)
        ).last_hidden_state


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_saved_lens_decoder_is_bidirectional_and_its_base_is_not(tiny_mistral, tmp_path, attn):
    build_lens_model(tiny_mistral, n_clusters=8, output_dir=tmp_path / "lens", attn_implementation=attn)
    lens = load_lens_model(tmp_path / "lens")[0].auto_model.eval()
    base = AutoModel.from_pretrained(tiny_mistral, attn_implementation=attn).eval()
    for model, expect_change in ((lens, True), (base, False)):
        first = hidden_states(model, [1, 10, 11, 12, 13])[0, 1]
        second = hidden_states(model, [1, 10, 11, 12, 14])[0, 1]
        assert (not torch.allclose(first, second, atol=1e-6)) == expect_change


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_builds_from_other_decoder_families(arch, tmp_path):
    base = build_decoder(tmp_path / arch, arch)
    model = build_lens_model(base, n_clusters=12, output_dir=tmp_path / "lens")
    assert model[0].auto_model.config.is_causal is False
    embeddings = encode(model, ["what is rba", "the quick brown fox"], query=True, instruction="Find it.")
    assert embeddings.shape == (2, 12)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_tokenizer_gets_special_tokens_pad_and_exactly_one_eos():
    tokenizer = build_tokenizer(eos=False)
    assert not appends_eos(tokenizer)
    added = prepare_tokenizer(tokenizer, decoder=True)
    assert added == 3 and tokenizer.pad_token == "<unk>"
    ids = tokenizer("<instruct>do it\n<query>rba")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert ids.count(tokenizer.eos_token_id) == 1
    assert tokenizer.convert_tokens_to_ids("<query>") in ids


def test_tokenizer_that_already_appends_eos_keeps_a_single_one():
    tokenizer = build_tokenizer(eos=True)
    prepare_tokenizer(tokenizer, decoder=True)
    assert tokenizer("abc")["input_ids"].count(tokenizer.eos_token_id) == 1


def test_truncation_keeps_the_eos_and_warns(tiny_lens, caplog):
    model = load_lens_model(tiny_lens)
    model.max_seq_length = 8
    features = model.preprocess(["the quick brown fox jumps over the lazy dog " * 5, "fox"])
    ids = features["input_ids"][0].tolist()
    assert len(ids) == 8 and ids[-1] == model[0].tokenizer.eos_token_id
    assert "1 of 2 texts in a batch exceed max_seq_length=8" in caplog.text
    caplog.clear()
    model.preprocess(["the quick brown fox jumps over the lazy dog " * 5])
    assert "exceed" not in caplog.text  # reported once per model, not per batch


def test_builds_from_the_real_minilm(minilm_path, tmp_path):
    model = build_lens_model(minilm_path, n_clusters=64, output_dir=tmp_path / "lens")
    pooling = model[1]
    assert pooling.next_token_outputs is False and pooling.token_clusters.shape[0] == 30522
    docs = [
        "A man is playing a guitar.",
        "Someone plays a musical instrument.",
        "Stock markets fell sharply today.",
    ]
    embeddings = encode(model, docs)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > similarity[0, 2]


def test_vocabulary_matrix_is_the_untied_lm_head_from_safetensors_or_bin(tmp_path):
    from transformers import AutoModelForCausalLM

    from lens_embed.models.backbone import vocabulary_matrix

    base = build_decoder(tmp_path / "st", "mistral")
    causal = AutoModelForCausalLM.from_pretrained(base)
    head = causal.get_output_embeddings().weight
    assert torch.equal(vocabulary_matrix(base, causal.model, decoder=True), head)
    (tmp_path / "bin").mkdir()
    torch.save(causal.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    causal.config.save_pretrained(tmp_path / "bin")
    assert torch.equal(vocabulary_matrix(tmp_path / "bin", causal.model, decoder=True), head)
    assert not torch.equal(head, causal.get_input_embeddings().weight)


def test_eager_and_sdpa_give_the_same_embeddings_with_padding(tiny_lens):
    texts = ["what is rba", "the quick brown fox jumps over the lazy dog again", ""]
    eager = load_lens_model(tiny_lens, model_kwargs={"attn_implementation": "eager"})
    sdpa = load_lens_model(tiny_lens, model_kwargs={"attn_implementation": "sdpa"})
    assert eager[0].auto_model.config._attn_implementation == "eager"
    assert np.abs(encode(eager, texts, query=True) - encode(sdpa, texts, query=True)).max() < 1e-5
