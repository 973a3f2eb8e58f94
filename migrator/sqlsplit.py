"""Split a vendor SQL file into statements exactly as temporal-sql-tool does.

The repair runs the vendor's remaining statements itself, so it must see the very statements the tool would
run: same boundaries, same text, comments removed the same way. This is a port of the algorithm of the tool's
``persistence.LoadAndSplitQueryFromReaders`` (v1.22+): ``;`` ends a statement outside parentheses and
``BEGIN``/``END`` blocks (which covers the vendor's DO blocks and function bodies), quotes are skipped without
escape handling, and ``--`` comments are cut up to the end of the line (the newline is kept). It works on bytes,
as the tool does, so that word boundaries match byte for byte.
"""

from __future__ import annotations


class SplitError(ValueError):
    """The file is not something the tool could split (it would refuse it too)."""


_BEGIN = b"begin"
_END = b"end"


def _is_word_char(byte: int) -> bool:
    # The tool treats a byte as a rune: a letter or a decimal digit; the underscore is not one.
    char = chr(byte)
    return char.isalpha() or char.isdecimal()


def _word_at(text: bytes, word: bytes, pos: int) -> bool:
    end = pos + len(word)
    if text[pos:end] != word:
        return False
    if pos > 0 and _is_word_char(text[pos - 1]):
        return False
    return not (end < len(text) and _is_word_char(text[end]))


def split_statements(content: bytes) -> list[str]:  # noqa: PLR0912 - one branch per token, like the tool
    """Return the statements of one SQL file, each with its trailing ``;`` and without comments."""
    lower = content.lower()  # bytes.lower() folds ASCII only, so offsets stay aligned
    size = len(content)
    result: list[str] = []
    i = j = 0
    while i < size:
        stack: list[int] = []
        pieces: list[bytes] = []
        while j < size:
            char = lower[j]
            if char == ord(";") and not stack:
                j += 1
                break
            if char == ord("("):
                stack.append(char)
            elif char == ord(")"):
                if not stack or stack[-1] != ord("("):
                    raise SplitError("unmatched right parenthesis")
                stack.pop()
            elif char == ord("b") and _word_at(lower, _BEGIN, j):
                stack.append(char)
                j += len(_BEGIN) - 1
            elif char == ord("e") and _word_at(lower, _END, j):
                if not stack or stack[-1] != ord("b"):
                    raise SplitError("unmatched END keyword")
                stack.pop()
                j += len(_END) - 1
            elif char in (ord("'"), ord('"')):
                j += 1
                while j < size and lower[j] != char:
                    j += 1
                if j == size:
                    raise SplitError("unmatched quotes")
            elif lower.startswith(b"--", j):
                pieces.append(content[i:j].rstrip(b" "))
                while j < size and lower[j] != ord("\n"):
                    j += 1
                i = j
            j += 1
        if stack:
            raise SplitError("unmatched left parenthesis" if stack[-1] == ord("(") else "unmatched BEGIN keyword")
        pieces.append(content[i:j])
        statement = b"".join(pieces).decode("utf-8").strip()
        if statement:
            result.append(statement)
        i = j
    return result
