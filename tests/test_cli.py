"""The lens-embed command, run as a user would (in-process through main)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from lens_embed.base.options import keywords
from lens_embed.commands import build_parser, main, parse


def test_build_encode_info_explain(tiny_mistral, tmp_path, capsys):
    out = tmp_path / "lens"
    assert main(["build", str(tiny_mistral), str(out), "--clusters", "12"]) == 0
    texts = tmp_path / "texts.txt"
    texts.write_text("what is rba\nthe quick brown fox\n\n")
    assert (
        main(
            [
                "encode",
                str(out),
                str(texts),
                "--out",
                str(tmp_path / "q.npy"),
                "--query",
                "--instruction",
                "Find passages.",
            ]
        )
        == 0
    )
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
    assert main(["build", "minilm", str(tmp_path / "x"), "--clusters", "100000"]) == 2
    assert "lens-embed build: error: " in capsys.readouterr().err


def test_a_missing_folder_named_without_a_path_is_reported_missing_not_looked_up(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert main(["info", "OUT"]) == 2  # a bare name: lens-embed names hub models ORG/NAME, and says so
    assert capsys.readouterr().err == (
        "lens-embed info: error: model directory not found: OUT "
        "(a hub model is named ORG/NAME, e.g. sentence-transformers/OUT)\n"
    )
    assert main(["info", "runs/a/OUT"]) == 2
    assert capsys.readouterr().err == "lens-embed info: error: model directory not found: runs/a/OUT\n"
    (tmp_path / "runs").mkdir()
    assert main(["info", "runs/OUT"]) == 2  # ORG/NAME, but ORG is a folder here
    assert "model directory not found: runs/OUT" in capsys.readouterr().err


def test_a_model_a_killed_build_overwrite_moved_aside_is_put_back_when_read(
    tiny_lens, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_lens, tmp_path / ".OUT.old-0123abcd" / "old")  # as the killed swap left it
    assert main(["info", "OUT"]) == 0
    assert json.loads(capsys.readouterr().out)["clusters"] == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["OUT"]


def test_every_verb_checks_its_output_before_it_loads_a_model(model_verb, tmp_path, capsys):
    blocked = tmp_path / "verb-output"  # where the verbs write, a regular file here
    argv = model_verb(tmp_path / "no-such-model")
    outputs = [arg for arg in argv if arg.startswith(str(blocked))]
    if not outputs:
        pytest.skip(f"{argv[0]} writes nothing")
    blocked.write_text("a file")
    assert main(argv) == 2
    err = capsys.readouterr().err
    where = "is" if outputs[0] == str(blocked) else f"lies under {blocked}, which is"
    assert err.endswith(f"{outputs[0]} {where} a file, not a folder\n")
    assert "no-such-model" not in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, error",
    [
        (["build", "{tmp}/base", "{tmp}/file"], "OUTPUT {tmp}/file is a file, not a folder"),
        (["convert", "{tmp}/base", "{tmp}/file/out"], "OUTPUT {tmp}/file/out lies under {tmp}/file"),
        (["encode", "{tmp}/model", "{tmp}/texts", "--out", "{tmp}"], "--out {tmp} is a folder; name a file"),
        (
            ["encode-corpus", "{tmp}/model", "{tmp}/texts", "--out", "{tmp}/file"],
            "--out {tmp}/file is a file",
        ),
        (["sparse-encoder", "{tmp}/model", "{tmp}/file"], "OUTPUT {tmp}/file is a file, not a folder"),
        (["evaluate", "compare", "{tmp}", "--out", "{tmp}"], "--out {tmp} is a folder; name a file"),
        (
            ["train", "--model", "{tmp}/m", "--data", "{tmp}/d", "--output", "{tmp}/file"],
            "--output {tmp}/file",
        ),
        (
            ["mine-negatives", "--data", "{tmp}/d", "--output", "{tmp}/file/x.jsonl"],
            "--output {tmp}/file/x.jsonl lies",
        ),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else None,
)
def test_outputs_that_cannot_be_written_are_refused_first(argv, error, tmp_path, capsys):
    (tmp_path / "file").write_text("a file")
    assert main([arg.format(tmp=tmp_path) for arg in argv]) == 2
    assert f"error: {error.format(tmp=tmp_path)}" in capsys.readouterr().err


def test_convert_verb_writes_a_loadable_model(released, tmp_path, capsys):
    assert main(["convert", str(released), str(tmp_path / "converted")]) == 0
    assert "24 dimensions" in capsys.readouterr().out
    assert main(["convert", str(released), str(tmp_path / "converted")]) == 2  # not over existing work
    assert "overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (b'{"text": "fine"}\n\n{"text": "after a blank"}\n', "texts.jsonl:2: blank line"),
        (b'"fine"\n{"text": "unterminated\n', "texts.jsonl:2:10: not valid JSON"),
        (b'"fine"\n"caf\xe9"\n', "texts.jsonl:2: not valid UTF-8 (byte offset 11)"),
        (
            b'"fine"\n{"text": "a \\ud800 b"}\n',
            "texts.jsonl:2: the text holds a lone surrogate U+D800 at character 2",
        ),
    ],
)
def test_bad_jsonl_lines_are_named_by_file_and_line(tiny_lens, tmp_path, capsys, content, where):
    texts = tmp_path / "texts.jsonl"
    texts.write_bytes(content)
    assert main(["encode", str(tiny_lens), str(texts), "--out", str(tmp_path / "e.npy")]) == 2
    assert where in capsys.readouterr().err
    assert not (tmp_path / "e.npy").exists()


def test_text_files_split_on_newlines_only(tmp_path):
    from lens_embed.base.inputs import read_texts

    texts = tmp_path / "texts.txt"
    texts.write_bytes("one\u2028still one\r\ntwo\n\nfour".encode())
    assert read_texts(texts) == ["one\u2028still one", "two", "", "four"]


def test_npy_outputs_get_the_usual_file_mode(tiny_lens, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("fox\n")
    umask = os.umask(0o022)
    try:
        assert main(["encode", str(tiny_lens), str(texts), "--out", str(tmp_path / "e.npy")]) == 0
    finally:
        os.umask(umask)
    assert (tmp_path / "e.npy").stat().st_mode & 0o777 == 0o644
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


@pytest.mark.parametrize(
    "argv",
    [
        ["encode", "m", "t.txt", "--out", "e.npy", "--batch-size", "0"],
        ["encode", "m", "t.txt", "--out", "e.npy", "--max-active-dims", "0"],
        ["search", "m", "q.jsonl", "--collection", "c", "--out", "r.trec", "--max-active-dims", "-2"],
        ["explain", "m", "fox", "--top", "-1"],
        ["explain", "m", "fox", "--top", "0"],
        ["build", "minilm", "out", "--clusters", "1"],
        ["build", "minilm", "out", "--kmeans-iterations", "0"],
        ["build", "minilm", "out", "--dense-weight", "nan"],
        ["convert", "src", "out", "--max-seq-length", "-5"],
        ["default", "--clusters", "two"],
        ["encode-corpus", "m", "t.txt", "--out", "o", "--shard-size", "0"],
        ["encode-corpus", "m", "t.txt", "--out", "o", "--batch-size", "-1"],
        ["encode-corpus", "m", "t.txt", "--out", "o", "--max-tokens", "0"],
        ["evaluate", "offline", "--batch-size", "0"],
        ["evaluate", "mteb", "--model", "m", "--shard-size", "0"],
        ["evaluate", "airbench", "--model", "m", "--top-k", "0"],
        ["evaluate", "check-harness", "--tolerance", "-0.1"],
        ["evaluate", "compare", "results", "--tolerance", "nan"],
        ["train", "--model", "m", "--data", "d.jsonl", "--output", "o", "--grad-accum", "0"],
        ["train", "--model", "m", "--data", "d.jsonl", "--output", "o", "--max-seq-length", "0"],
        ["train", "--model", "m", "--data", "d.jsonl", "--output", "o", "--distill-weight", "-1"],
        ["train", "--model", "m", "--data", "d.jsonl", "--output", "o", "--group-size", "1"],
        ["train", "--model", "m", "--data", "d.jsonl", "--output", "o", "--lora-dropout", "1.5"],
        [
            "train",
            "--model",
            "m",
            "--data",
            "d.jsonl",
            "--output",
            "o",
            "--document-regularizer-weight",
            "-1",
        ],
        ["train", "--model", "m", "--data", "d.jsonl", "--output", "o", "--query-regularizer-weight", "nan"],
        ["train", "--model", "m", "--data", "d.jsonl", "--output", "o", "--regularizer-warmup-steps", "-3"],
        ["mine-negatives", "--data", "d.jsonl", "--output", "o.jsonl", "--num-negatives", "0"],
        ["mine-negatives", "--data", "d.jsonl", "--output", "o.jsonl", "--batch-size", "0"],
    ],
)
def test_numeric_options_are_validated_when_parsed(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a value accepted by mistake must not make the verb write into the checkout
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error: argument --" in capsys.readouterr().err


def test_explain_top_must_not_exceed_k(tiny_lens, capsys):
    assert main(["explain", str(tiny_lens), "fox", "--top", "17"]) == 2
    assert "lens-embed explain: error: " in capsys.readouterr().err  # K = 16
    assert main(["explain", str(tiny_lens), "fox", "--top", "16"]) == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "offline", "--data", "{tmp}/no-data-here"],
        [
            "mine-negatives",
            "--data",
            "{tmp}/missing.jsonl",
            "--output",
            "{tmp}/out.jsonl",
            "--method",
            "bm25",
        ],
        ["train", "--model", "{tmp}/no-model", "--data", "{tmp}/missing.jsonl", "--output", "{tmp}/out"],
        ["info", "{tmp}/no-model"],
    ],
)
def test_every_verb_reports_user_errors_in_one_format(argv, tmp_path, capsys):
    assert main([arg.format(tmp=tmp_path) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lens-embed {argv[0]}: error: ") and "Traceback" not in err


def test_help_loads_neither_torch_nor_sentence_transformers():
    probe = (
        "import sys\n"
        "from lens_embed.commands import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(name for name in ('torch', 'sentence_transformers', 'transformers') "
        "if name in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    )
    assert "usage: lens-embed" in result.stdout
    assert "HEAVY []" in result.stdout


def _files(folder):
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()
    }


@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_build_and_convert_refuse_an_output_overlapping_their_source(
    tiny_mistral, released, tmp_path, capsys, where
):
    for verb, source in (("build", tiny_mistral), ("convert", released)):
        base = tmp_path / verb / "base"
        shutil.copytree(source, base)
        before = _files(base.parent)
        output = {"same": base, "inside": base / "lens", "around": base.parent}[where]
        assert main([verb, str(base), str(output), "--overwrite"]) == 2
        assert "is (or overlaps) the model it is made from" in capsys.readouterr().err
        assert _files(base.parent) == before and sorted(p.name for p in base.parent.iterdir()) == ["base"]


def test_encode_and_encode_corpus_refuse_an_output_inside_the_model(tiny_lens, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_lens, model)
    before = _files(model)
    texts = tmp_path / "texts.txt"
    texts.write_text("a text\n")
    assert (
        main(["encode", str(model), str(texts), "--out", str(model / "model.safetensors"), "--overwrite"])
        == 2
    )
    assert "--out" in capsys.readouterr().err
    assert main(["encode-corpus", str(model), str(texts), "--out", str(model / "shards")]) == 2
    assert "is (or overlaps) the model" in capsys.readouterr().err
    assert _files(model) == before and not (model / "shards").exists()


# Every verb that loads or builds a model (training's verbs declare their options in TrainConfig).
LOADING_VERBS = [
    ["build", "base", "out"],
    ["encode", "m", "t.txt", "--out", "e.npy"],
    ["info", "m"],
    ["explain", "m", "a text"],
    ["card", "m"],
    ["sparse-encoder", "m", "out"],
    ["encode-corpus", "m", "t.txt", "--out", "shards"],
    ["index", "m", "corpus.jsonl", "--collection", "c"],
    ["search", "m", "queries.jsonl", "--collection", "c", "--out", "run.trec"],
    ["evaluate", "mteb", "--model", "m"],
    ["evaluate", "offline"],
    ["evaluate", "airbench", "--model", "m"],
    ["evaluate", "check-harness"],
]


@pytest.mark.parametrize("argv", LOADING_VERBS, ids=lambda argv: " ".join(argv[:2]))
def test_every_verb_that_loads_a_model_takes_transformers_dtype_and_attention_names(argv, capsys):
    parser = build_parser()
    options = parse([*argv, "--dtype", "bfloat16", "--attn-implementation", "sdpa"])
    assert (options.dtype, options.attn_implementation) == ("bfloat16", "sdpa")
    assert (parse(argv).dtype, parse(argv).attn_implementation) == (None, None)
    for option, value in (("--dtype", "fp16"), ("--attn-implementation", "flash")):
        with pytest.raises(SystemExit) as stopped:
            parser.parse_args([*argv, option, value])
        assert stopped.value.code == 2 and f"invalid choice: '{value}'" in capsys.readouterr().err


def test_a_collection_lives_in_one_place_a_path_or_a_url():
    argv = ["search", "m", "q.jsonl", "--collection", "c", "--out", "run.trec"]
    assert (parse([*argv, "--path", "engine"]).path, parse([*argv, "--url", "http://h:6333"]).url) == (
        "engine",
        "http://h:6333",
    )
    for verb in (argv, ["index", "m", "corpus.jsonl", "--collection", "c"]):
        with pytest.raises(SystemExit) as stopped:
            parse([*verb, "--path", "engine", "--url", "http://h:6333"])
        assert stopped.value.code == 2


def test_switches_take_no_negation_and_read_false_when_left_out(capsys):
    argv = ["encode", "m", "t.txt", "--out", "e.npy"]
    assert (parse(argv).overwrite, parse(argv).query) == (False, False)
    assert (parse([*argv, "--overwrite", "--query"]).overwrite, parse([*argv, "--query"]).query) == (
        True,
        True,
    )
    with pytest.raises(SystemExit):
        parse([*argv, "--no-overwrite"])
    assert "unrecognized arguments: --no-overwrite" in capsys.readouterr().err


def test_a_verb_words_the_default_of_an_inherited_option_its_own_way(capsys):
    helps = {}
    for verb in ("build", "info", "search"):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        helps[verb] = " ".join(capsys.readouterr().out.split())
    assert "the checkpoint's" in helps["build"] and "the checkpoint's" not in helps["info"]
    assert "(default: the saved one)" in helps["info"] and "probe hash depends on it" in helps["search"]


def test_a_verb_hands_its_options_to_a_function_by_the_names_of_its_keyword_parameters():
    def work(model, *, top_k: int, using: str, show_progress: bool = True) -> None:
        """``model`` is positional: the option of that name is not passed."""

    options = parse(["search", "m", "q.jsonl", "--collection", "c", "--out", "r", "--top-k", "7"])
    assert keywords(options, work) == {"top_k": 7, "using": "auto"}
