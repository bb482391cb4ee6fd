"""LENS models get the authors' instructions by default: every MTEB(eng, v1) task, both sides, down to
the ids reaching the backbone (mteb's task metadata is local: no network)."""

from __future__ import annotations

import json
from pathlib import Path

import mteb
import pytest
from mteb.types import PromptType

from lens_embed.evaluation.encoders import LoadedModelEncoder, minilm_meta
from lens_embed.evaluation.instructions import AUTHORS_MAP, InstructionError, load_instructions
from lens_embed.prompts import query_prompt

TEXT = "A tiny text, with  two spaces."


def _encoder(model, instructions: str = "authors") -> LoadedModelEncoder:
    meta = minilm_meta().model_copy(update={"name": "test/lens", "revision": "r1", "use_instructions": True})
    return LoadedModelEncoder(model, meta, instructions=load_instructions(instructions))


def test_the_shipped_map_is_the_authors_file(anchors_dir: Path) -> None:
    assert (
        AUTHORS_MAP.read_bytes()
        == (anchors_dir / "lens_instructions" / "authors_task_instructions.json").read_bytes()
    )


def test_every_task_and_side_reaches_the_backbone_with_the_authors_instruction(
    converted_mistral, anchors_dir: Path, recorded
) -> None:
    variant, folder = converted_mistral
    if variant != "legacyTrue":
        pytest.skip("one tokenizer variant is enough here; both are pinned by the tokenizer test")
    resolved = json.loads((anchors_dir / "lens_instructions" / "resolved_mteb_eng_v1.json").read_text())
    model, recorder = recorded(folder)
    encoder = _encoder(model)
    tokenizer = model[0].tokenizer
    for name, sides in resolved.items():
        metadata = mteb.get_task(name).metadata
        for side, prompt_type in (("query", PromptType.query), ("document", PromptType.document)):
            encoder.encode(
                [{"text": [TEXT]}],
                task_metadata=metadata,
                hf_split="test",
                hf_subset="default",
                prompt_type=prompt_type,
            )
            instruction = sides[side]
            expected = TEXT if instruction is None else query_prompt(instruction) + TEXT
            assert recorder.take() == [tokenizer(expected)["input_ids"]], (name, side)


def test_mtebs_own_wrapper_builds_the_authors_prompt_from_the_same_data(anchors_dir: Path) -> None:
    """mteb's lookup and instruction template over the authors' map (what a submission kit's registry entry
    gives mteb's InstructSentenceTransformerModel) build exactly the authors' query prompt of every task."""
    resolved = json.loads((anchors_dir / "lens_instructions" / "resolved_mteb_eng_v1.json").read_text())
    encoder = _encoder(None)
    for name, sides in resolved.items():
        metadata = mteb.get_task(name).metadata
        assert encoder.get_task_instruction(metadata, PromptType.query) == query_prompt(sides["query"]), name


def test_mteb_prompts_differ_and_are_an_experiment_of_their_own() -> None:
    scifact = mteb.get_task("SciFact").metadata
    authors, mteb_prompts = _encoder(None), _encoder(None, "mteb")
    assert authors.task_instruction(scifact).query.endswith("refute the claim.")
    assert mteb_prompts.task_instruction(scifact).query.endswith("refute the claim")
    assert mteb_prompts.task_instruction(scifact).document is None


def test_instruction_files_in_both_formats(tmp_path: Path) -> None:
    sts12 = mteb.get_task("STS12").metadata
    authors_format = tmp_path / "map.json"
    authors_format.write_text(json.dumps({"defaults_by_type": {"STS": "Find similar text"}, "tasks": {}}))
    entry = _encoder(None, str(authors_format)).task_instruction(sts12)
    assert (entry.query, entry.document) == ("Find similar text.", "Find similar text.")
    resolved = tmp_path / "resolved.json"
    resolved.write_text(json.dumps({"STS12": {"query": "Q", "document": None}}))
    encoder = _encoder(None, str(resolved))
    assert encoder.task_instruction(sts12).document is None  # verbatim
    assert encoder.instructions.describe()["instructions"] == str(resolved.resolve())
    with pytest.raises(InstructionError, match="no instruction for task 'STS13'"):
        encoder.task_instruction(mteb.get_task("STS13").metadata)
    broken = tmp_path / "broken.json"
    broken.write_text('{"STS12": {"query": "Q",\n oops}')
    with pytest.raises(InstructionError, match=r"broken.json:2: not valid JSON"):
        load_instructions(str(broken))
