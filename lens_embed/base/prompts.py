"""The LENS input format: how instructions and queries become model text.

The authors embed a query as ``<instruct>{instruction}\n<query>{query}`` and a document as
its plain text; BOS and exactly one EOS are added by the tokenizer. Keeping the format in one
place means sentence-transformers prompts, mteb and training all produce identical strings.
"""

from __future__ import annotations

INSTRUCT_TOKEN = "<instruct>"
QUERY_TOKEN = "<query>"
RESPONSE_TOKEN = "<response>"
SPECIAL_TOKENS = (INSTRUCT_TOKEN, QUERY_TOKEN, RESPONSE_TOKEN)
# The two sides a text is embedded as; sentence-transformers passes the side as ``task`` (``encode_query``,
# ``encode_document``, the trainer's ``router_mapping``), a word that means an mteb task everywhere else here.
SIDES = ("query", "document")

DEFAULT_QUERY_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query."

# Named instructions shipped with every model, usable as ``encode_query(..., prompt_name=NAME)``.
NAMED_INSTRUCTIONS: dict[str, str] = {
    "web_search": DEFAULT_QUERY_INSTRUCTION,
    "sts": "Retrieve semantically similar text.",
    "paraphrase": "Retrieve text that is a paraphrase of the given text.",
    "classification": "Classify the given text by its topic and intent.",
    "fact_check": "Given a scientific claim, retrieve documents that support or refute the claim.",
}


def query_prompt(instruction: str) -> str:
    """The string prepended to a query text so that it reads ``<instruct>{instruction}\\n<query>{text}``.

    A prompt that ends with ``<query>`` is what makes a plain ``model.encode(texts, prompt=...)`` embed
    queries; ``encode_query`` / ``encode_document`` decide by their call whatever the prompt.

    Args:
        instruction: the task instruction, e.g. ``"Given a web search query, retrieve relevant passages."``.
    """
    if not isinstance(instruction, str):
        raise TypeError(f"instruction must be a string, got {type(instruction).__name__}")
    return f"{INSTRUCT_TOKEN}{instruction}\n{QUERY_TOKEN}"


def default_prompts() -> dict[str, str]:
    """sentence-transformers ``prompts``: ``query``/``document`` plus every named instruction
    (``prompt_name=``)."""
    prompts = {"query": query_prompt(DEFAULT_QUERY_INSTRUCTION), "document": ""}
    prompts.update({name: query_prompt(text) for name, text in NAMED_INSTRUCTIONS.items()})
    return prompts


def lone_surrogate(text: str) -> int | None:
    """Where the text holds a lone UTF-16 surrogate (from a JSON ``"\\ud800"`` escape, say), else None.

    Such a code point is not Unicode text: it has no UTF-8 encoding, so no tokenizer can read it.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return error.start
    return None
