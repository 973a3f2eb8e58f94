"""Split a vendor SQL file into statements exactly as temporal-sql-tool does.

The repair runs the vendor's remaining statements itself, so it must see the very statements the tool would
run: same boundaries, same text, comments removed the same way. This is a port of the algorithm of the tool's
``persistence.LoadAndSplitQueryFromReaders``, which changed across releases:

- v1.22-v1.29 (``LEGACY``): ``;`` ends a statement outside parentheses and ``BEGIN``/``END`` blocks; quotes are
  skipped without escape handling; ``--`` comments are cut up to the end of the line (the newline is kept).
- v1.31 (``BLOCKS``): also ``$$`` pairs, ``IF``/``END IF`` (except the ``IF`` of ``ADD COLUMN IF``,
  ``CREATE TABLE IF``, ``CREATE INDEX [CONCURRENTLY] IF``) and ``LOOP``/``END LOOP``. It cannot split the
  older releases' ``CREATE EXTENSION IF NOT EXISTS``, and the legacy rules cannot split the newer DO blocks.

A vendor tree belongs to one release, so `split_statements` uses whichever rules split the file; should both
split it differently, it refuses rather than guess. Both work on bytes, as the tool does, so that word
boundaries match byte for byte. The integration suite checks the result against what each pinned release's
real tool executes.
"""

from __future__ import annotations

import re
from enum import Enum


class SplitError(ValueError):
    """The file is not something the tool could split (it would refuse it too)."""


class Rules(Enum):
    LEGACY = "v1.22-v1.29"
    BLOCKS = "v1.31"


_SPACES = frozenset(b"\t\n\v\f\r \x85\xa0")  # Go's unicode.IsSpace over single bytes
_IF_EXEMPT_AFTER = (
    (b"add", b"column"),
    (b"create", b"index"),
    (b"create", b"index", b"concurrently"),
    (b"create", b"table"),
)


_OPENERS = {b"(": "left parenthesis", b"b": "BEGIN keyword", b"i": "IF keyword", b"l": "LOOP keyword", b"$": "$$"}
_CLOSERS = {b"b": "END", b"i": "END IF", b"l": "END LOOP"}


def _is_word_char(byte: int) -> bool:
    # The tool treats a byte as a rune: a letter or a decimal digit; the underscore is not one.
    char = chr(byte)
    return char.isalpha() or char.isdecimal()


# Where `_split` can act: a byte it looks at, or the first letter of BEGIN/IF/LOOP/END after a non-word byte.
# Every other byte only moves it on, so it jumps from one such place to the next (same result, far faster).
_WORD_BYTES = b"".join(re.escape(bytes([byte])) for byte in range(256) if _is_word_char(byte))
_NEXT = re.compile(rb"[;()$'\"-]|(?<![" + _WORD_BYTES + rb"])[bile]")


def _word_at(text: bytes, word: bytes, pos: int) -> bool:
    end = pos + len(word)
    if text[pos:end] != word:
        return False
    if pos > 0 and _is_word_char(text[pos - 1]):
        return False
    return not (end < len(text) and _is_word_char(text[end]))


def _word_after(text: bytes, word: bytes, pos: int) -> int | None:
    """Where ``word`` starts if it follows ``pos`` after at least one space, else None."""
    after = pos
    while after < len(text) and text[after] in _SPACES:
        after += 1
    return after if after != pos and _word_at(text, word, after) else None


def _words_before(text: bytes, pos: int, words: tuple[bytes, ...]) -> bool:
    """Whether ``words`` end just before ``pos`` (which must be a space), each a whole word, spaces between."""
    if pos <= 0 or text[pos] not in _SPACES:
        return False
    for word in reversed(words):
        while pos >= 0 and text[pos] in _SPACES:
            pos -= 1
        while pos > 0 and _is_word_char(text[pos - 1]):
            pos -= 1
        if pos < 0 or not _word_at(text, word, pos):
            return False
        pos -= 1
    return True


def _split(content: bytes, rules: Rules) -> list[str]:  # noqa: PLR0912, PLR0915 - one branch per token, like the tool
    lower = content.lower()  # bytes.lower() folds ASCII only, so offsets stay aligned
    size = len(content)
    blocks = rules is Rules.BLOCKS
    result: list[str] = []
    i = j = 0
    while i < size:
        stack: list[bytes] = []
        pieces: list[bytes] = []
        while j < size:
            found = _NEXT.search(lower, j)
            if found is None:
                j = size
                break
            j = found.start()
            char = lower[j : j + 1]
            if char == b";" and not stack:
                j += 1
                break
            if char == b"(":
                stack.append(char)
            elif char == b")":
                if not stack or stack[-1] != b"(":
                    raise SplitError("unmatched right parenthesis")
                stack.pop()
            elif blocks and char == b"$" and _word_at(lower, b"$$", j):
                if stack and stack[-1] == b"$":
                    stack.pop()
                else:
                    stack.append(b"$")
                j += 1
            elif blocks and char == b"i" and _word_at(lower, b"if", j):
                if not any(_words_before(lower, j - 1, words) for words in _IF_EXEMPT_AFTER):
                    stack.append(b"i")
                    j += 1
            elif blocks and char == b"l" and _word_at(lower, b"loop", j):
                stack.append(b"l")
                j += 3
            elif char == b"b" and _word_at(lower, b"begin", j):
                stack.append(b"b")
                j += 4
            elif char == b"e" and _word_at(lower, b"end", j):
                closed = next(
                    (
                        (opener, at)
                        for opener, word in ((b"i", b"if"), (b"l", b"loop"))
                        if blocks and (at := _word_after(lower, word, j + 3)) is not None
                    ),
                    None,
                )
                opener, last = closed if closed else (b"b", j)
                if not stack or stack[-1] != opener:
                    raise SplitError(f"unmatched {_CLOSERS[opener]} keyword")
                stack.pop()
                j = last + (1 if opener == b"i" else 3 if opener == b"l" else 2)
            elif char in (b"'", b'"'):
                j = lower.find(char, j + 1)
                if j == -1:
                    raise SplitError("unmatched quotes")
            elif lower.startswith(b"--", j):
                pieces.append(content[i:j].rstrip(b" "))
                end = lower.find(b"\n", j)
                j = size if end == -1 else end
                i = j
            j += 1
        if stack:
            raise SplitError(f"unmatched {_OPENERS[stack[-1]]}")
        pieces.append(content[i:j])
        statement = b"".join(pieces).decode("utf-8").strip()
        if statement:
            result.append(statement)
        i = j
    return result


def split_statements(content: bytes) -> list[str]:
    """Return the statements of one SQL file, each with its trailing ``;`` and without comments."""
    outcomes: dict[Rules, list[str] | SplitError] = {}
    for rules in Rules:
        try:
            outcomes[rules] = _split(content, rules)
        except SplitError as error:
            outcomes[rules] = error
    splits = [value for value in outcomes.values() if not isinstance(value, SplitError)]
    if not splits:
        legacy = outcomes[Rules.LEGACY]
        raise legacy if isinstance(legacy, SplitError) else SplitError("no release's rules split this file")
    if any(split != splits[0] for split in splits):
        raise SplitError("the releases' splitting rules disagree on this file; it cannot be run safely")
    return splits[0]
