"""Reading the files users give: one error format, ``FILE:LINE: what is wrong``, for every reader.

Importing this is instant (no torch), so the command line can use it while it parses, and every verb
that reads texts (``encode``, ``encode-corpus``) reads them through the same function.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lens_embed.prompts import lone_surrogate
from lens_embed.storage import text_lines


def read_texts(path: str | os.PathLike) -> list[str]:
    """The texts of a file: one per line, or for ``.jsonl`` one JSON string or ``{"text": ...}`` object per line.

    A line is ended by ``\\n`` (``\\r\\n`` too) and nothing else, so line numbers match an editor's.
    In a plain text file a blank line is an empty text; in ``.jsonl`` it is an error.

    Args:
        path: the file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: bytes that are not UTF-8 (file, line and byte offset named), or a ``.jsonl`` line
            that is blank, not JSON, not a string / object with a string ``text``, or whose text holds a
            lone surrogate escape such as ``"\\ud800"`` (file:line named).
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"input file not found: {source}")
    lines = [line for _, line in text_lines(source)]
    if source.suffix != ".jsonl":
        return lines
    return [_jsonl_text(line, f"{source}:{number}") for number, line in enumerate(lines, start=1)]


def _jsonl_text(line: str, where: str) -> str:
    """The text of one ``.jsonl`` line; ``where`` (file:line) names it in errors."""
    if not line.strip():
        raise ValueError(f"{where}: blank line (every line of a .jsonl file holds one text)")
    try:
        item = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
    text = item.get("text") if isinstance(item, dict) else item
    if not isinstance(text, str):
        raise ValueError(f"{where}: expected a JSON string or an object with a string 'text'")
    position = lone_surrogate(text)
    if position is not None:
        raise ValueError(
            f"{where}: the text holds a lone surrogate U+{ord(text[position]):04X} at character {position} "
            "(a \\u escape of half a UTF-16 pair), which is not valid Unicode"
        )
    return text
