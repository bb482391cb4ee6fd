"""LENS models get the authors' instructions by default: every MTEB(eng, v1) task, both sides, down to
the ids reaching the backbone (mteb's task metadata is local: no network)."""

from __future__ import annotations

import json
from pathlib import Path

import mteb
import pytest
from mteb.types import PromptType

from lens_embed.base.prompts import query_prompt
from lens_embed.evaluation.encoders import LoadedModelEncoder, minilm_meta, text_loader
from lens_embed.evaluation.instructions import AUTHORS_MAP, InstructionError, load_instructions
from lens_embed.evaluation.runner import check_instructions
from lens_embed.models.loading import load_lens_model

TEXT = "A tiny text, with  two spaces."


@pytest.fixture(scope="module")
def any_lens(tiny_lens: Path):
    """A LENS model for the tests that read mteb's lookup and embed nothing."""
    return load_lens_model(tiny_lens, device="cpu")


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
                text_loader([TEXT]),
                task_metadata=metadata,
                hf_split="test",
                hf_subset="default",
                prompt_type=prompt_type,
            )
            instruction = sides[side]
            expected = TEXT if instruction is None else query_prompt(instruction) + TEXT
            assert recorder.take() == [tokenizer(expected)["input_ids"]], (name, side)


def test_mtebs_own_wrapper_builds_the_authors_prompt_from_the_same_data(anchors_dir: Path, any_lens) -> None:
    """mteb's lookup and instruction template over the authors' map (the arguments a submission kit's
    registry entry gives mteb's InstructSentenceTransformerModel) build exactly the authors' prompt of every
    task side: the LENS query prompt, or none for a plain document."""
    resolved = json.loads((anchors_dir / "lens_instructions" / "resolved_mteb_eng_v1.json").read_text())
    encoder = _encoder(any_lens)
    for name, sides in resolved.items():
        metadata = mteb.get_task(name).metadata
        assert encoder.get_task_instruction(metadata, PromptType.query) == query_prompt(sides["query"]), name
        document = encoder.get_task_instruction(metadata, PromptType.document)
        assert document == (query_prompt(sides["document"]) if sides["document"] else ""), name


def test_mteb_prompts_differ_and_are_an_experiment_of_their_own(any_lens) -> None:
    scifact = mteb.get_task("SciFact").metadata
    authors, mteb_prompts = _encoder(any_lens), _encoder(any_lens, "mteb")
    assert authors.get_instruction(scifact, PromptType.query).endswith("refute the claim.")
    assert mteb_prompts.get_instruction(scifact, PromptType.query).endswith("refute the claim")
    assert mteb_prompts.get_instruction(scifact, PromptType.document) == ""  # plain documents


def test_instruction_files_in_both_formats(tmp_path: Path, any_lens) -> None:
    sts12, scifact = mteb.get_task("STS12").metadata, mteb.get_task("SciFact").metadata
    authors_format = tmp_path / "map.json"
    authors_format.write_text(json.dumps({"defaults_by_type": {"STS": "Find similar text"}, "tasks": {}}))
    encoder = _encoder(any_lens, str(authors_format))
    entry = [encoder.get_instruction(sts12, side) for side in (PromptType.query, PromptType.document)]
    assert entry == ["Find similar text.", "Find similar text."]
    resolved = tmp_path / "resolved.json"
    resolved.write_text(
        json.dumps({"STS12": {"query": "Q", "document": None}, "SciFact": {"query": "Q", "document": None}})
    )
    encoder = _encoder(any_lens, str(resolved))
    # verbatim: a plain document side where mteb names one; STS12's texts have no side (mteb passes none)
    assert encoder.get_instruction(scifact, PromptType.document) == ""
    assert encoder.get_instruction(sts12, None) == encoder.get_instruction(scifact, PromptType.query) == "Q"
    assert encoder.instructions.describe()["instructions"] == str(resolved.resolve())
    with pytest.raises(InstructionError, match="no instruction for task 'STS13'"):
        check_instructions(encoder, [mteb.get_task("STS13")])
    broken = tmp_path / "broken.json"
    broken.write_text('{"STS12": {"query": "Q",\n oops}')
    with pytest.raises(InstructionError, match=r"broken.json:2: not valid JSON"):
        load_instructions(str(broken))
