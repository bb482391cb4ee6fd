"""The lens-embed command, run as a user would (in-process through main)."""

import json

import numpy as np

from lens_embed.cli import main


def test_build_encode_info_explain(tiny_mistral, tmp_path, capsys):
    out = tmp_path / "lens"
    assert main(["build", str(tiny_mistral), str(out), "--clusters", "12"]) == 0
    texts = tmp_path / "texts.txt"
    texts.write_text("what is rba\nthe quick brown fox\n\n")
    assert main(["encode", str(out), str(texts), "--out", str(tmp_path / "q.npy"), "--query",
                 "--instruction", "Find passages."]) == 0
    embeddings = np.load(tmp_path / "q.npy")
    assert embeddings.shape == (3, 12) and not embeddings[2].any()
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["clusters"] == 12 and info["bidirectional"] is True and info["lens"] is True
    assert main(["explain", str(out), "the quick brown fox", "--document", "a quick fox", "--top", "3"]) == 0
    printed = capsys.readouterr().out
    assert "top clusters" in printed and "cosine similarity" in printed


def test_encode_refuses_to_overwrite_existing_output(tiny_lens, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("fox\n")
    target = tmp_path / "emb.npy"
    np.save(target, np.arange(3))
    assert main(["encode", str(tiny_lens), str(texts), "--out", str(target)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert np.array_equal(np.load(target), np.arange(3))


def test_jsonl_input_with_a_bad_line_names_it(tiny_lens, tmp_path, capsys):
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "fine"}\n{"text": 5}\n')
    assert main(["encode", str(tiny_lens), str(texts), "--out", str(tmp_path / "e.npy")]) == 2
    assert "texts.jsonl:2" in capsys.readouterr().err


def test_errors_are_reported_without_a_traceback(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["build", "minilm", str(tmp_path / "x"), "--clusters", "1"]) == 2
    assert "1 < K < vocab size" in capsys.readouterr().err


def test_convert_verb_writes_a_loadable_model(released, tmp_path, capsys):
    assert main(["convert", str(released), str(tmp_path / "converted")]) == 0
    assert "24 dimensions" in capsys.readouterr().out
    assert main(["convert", str(released), str(tmp_path / "converted")]) == 2  # not over existing work
    assert "overwrite" in capsys.readouterr().err
