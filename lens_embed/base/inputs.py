"""Reading the files users give: one error format, ``FILE:LINE: what is wrong``, for every reader.

Every file a user hands in (texts, corpora, training rows, task data, results) is read through
:func:`text_lines`, :func:`json_lines` or :func:`read_json` (or a reader here built on them), so a
damaged file is reported by file and line rather than as a bare decoder error. Importing this is
instant (no torch), so the command line can use it while it parses, and every verb that reads texts
(``encode``, ``encode-corpus``) reads them through the same function.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lens_embed.base.prompts import lone_surrogate

__all__ = ["json_line", "json_lines", "read_documents", "read_json", "read_texts", "text_lines"]


def text_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text file, streamed, each line without its ``\\n`` / ``\\r\\n``.

    A line is ended by ``\\n`` and nothing else, so numbers match an editor's.

    Raises:
        ValueError: bytes that are not UTF-8, naming the file, the line and the byte offset.
    """
    source = Path(path)
    offset = 0
    with source.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"{source}:{number}: not valid UTF-8 (byte offset {offset + error.start}): {error.reason}"
                ) from None
            offset += len(raw)
            yield number, line.removesuffix("\n").removesuffix("\r")


def json_lines(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of every non-blank line of a JSON-lines file, streamed.

    Raises:
        ValueError: bytes that are not UTF-8 or a line that is not JSON, naming the file and line.
    """
    for number, line in text_lines(path):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            raise _not_json(f"{path}:{number}", error) from None


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value of a file (a record, a result) read whole.

    Raises:
        ValueError: bytes that are not UTF-8 or text that is not JSON (a truncated file, say),
            naming the file and line.
    """
    text = "\n".join(line for _, line in text_lines(path))
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise _not_json(f"{path}:{error.lineno}", error) from None


def _not_json(where: str, error: json.JSONDecodeError) -> ValueError:
    """The one wording of a JSON error; ``where`` is ``FILE:LINE``."""
    return ValueError(f"{where}:{error.colno}: not valid JSON ({error.msg})")


def json_line(line: str, where: str) -> Any:
    """The JSON value of one line of a ``.jsonl`` file; ``where`` (file:line) names it in errors."""
    if not line.strip():
        raise ValueError(f"{where}: blank line (every line of a .jsonl file holds one JSON value)")
    try:
        return json.loads(line)
    except json.JSONDecodeError as error:
        raise _not_json(where, error) from None


def read_texts(path: str | os.PathLike) -> list[str]:
    """The texts of a file: one per line, or for ``.jsonl`` one JSON string or ``{"text": ...}`` object
    per line.

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
    item = json_line(line, where)
    text = item.get("text") if isinstance(item, dict) else item
    if not isinstance(text, str):
        raise ValueError(f"{where}: expected a JSON string or an object with a string 'text'")
    return _valid_unicode(text, where)


def _valid_unicode(text: str, where: str, what: str = "the text") -> str:
    """``text``, unless it holds a lone surrogate (not valid Unicode: no model or engine can take it)."""
    position = lone_surrogate(text)
    if position is not None:
        raise ValueError(
            f"{where}: {what} holds a lone surrogate U+{ord(text[position]):04X} at character {position} "
            "(a \\u escape of half a UTF-16 pair), which is not valid Unicode"
        )
    return text


def read_documents(path: str | os.PathLike, *, titles: bool = True) -> dict[str, str]:
    """``{id: text}`` of a ``.jsonl`` file of ``{"_id" (or "id"): ..., "text": ..., "title": ...}`` rows
    (BEIR layout).

    A document with a title reads ``title + " " + text`` (as mteb embeds it); ``titles=False`` (queries)
    ignores titles. Errors name the file and line: bytes that are not UTF-8, blank or non-JSON lines,
    a row without an id or a string text, an id or text with a lone surrogate, and an id seen before
    (with the line it was first on).
    """
    source = Path(path)
    if source.suffix != ".jsonl":
        raise ValueError(
            f'{source}: expected a .jsonl file with one {{"_id": ..., "text": ...}} object per line'
        )
    if not source.is_file():
        raise FileNotFoundError(f"input file not found: {source}")
    documents: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, line in text_lines(source):
        where = f"{source}:{number}"
        doc_id, text = _document_row(line, where, titles)
        if doc_id in first_line:
            raise ValueError(f"{where}: duplicate id {doc_id!r} (first on line {first_line[doc_id]})")
        first_line[doc_id] = number
        documents[doc_id] = text
    if not documents:
        raise ValueError(f"{source}: no documents")
    return documents


def _document_row(line: str, where: str, titles: bool) -> tuple[str, str]:
    row = json_line(line, where)
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object with '_id' and 'text'")
    doc_id = row.get("_id", row.get("id"))
    if isinstance(doc_id, bool) or not isinstance(doc_id, str | int) or str(doc_id) == "":
        raise ValueError(f"{where}: missing id: each row needs a non-empty string or integer '_id' (or 'id')")
    text, title = row.get("text"), row.get("title") if titles else None
    if not isinstance(text, str) or not isinstance(title, str | None):
        raise ValueError(f"{where}: 'text' must be a string (and 'title', if given, a string)")
    document = f"{title} {text}".strip() if title else text.strip()
    return _valid_unicode(str(doc_id), where, "the id"), _valid_unicode(document, where)
