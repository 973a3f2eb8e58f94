from __future__ import annotations

import pytest

from migrator.sqlsplit import SplitError, split_statements


def test_statements_keep_their_semicolon_and_lose_comments() -> None:
    text = b"CREATE TABLE a (x INT); -- trailing\n-- whole line\nCREATE TABLE b (y INT);\n"
    assert split_statements(text) == ["CREATE TABLE a (x INT);", "CREATE TABLE b (y INT);"]


def test_semicolons_inside_quotes_and_parentheses_do_not_split() -> None:
    text = b"INSERT INTO t (a) VALUES ('x;y');\nCREATE TABLE c (d TEXT DEFAULT ';', CHECK (d <> ';'));"
    assert split_statements(text) == [
        "INSERT INTO t (a) VALUES ('x;y');",
        "CREATE TABLE c (d TEXT DEFAULT ';', CHECK (d <> ';'));",
    ]


def test_begin_end_blocks_hold_their_semicolons() -> None:
    text = b"DO $$\nBEGIN\n  PERFORM 1;\n  PERFORM 2;\nEND\n$$;\nCREATE TABLE z (i INT);"
    assert split_statements(text) == ["DO $$\nBEGIN\n  PERFORM 1;\n  PERFORM 2;\nEND\n$$;", "CREATE TABLE z (i INT);"]


def test_comment_inside_statement_is_cut_to_end_of_line_like_the_tool() -> None:
    text = b"CREATE TABLE t (\n  a INT, -- the a\n  b INT\n);"
    assert split_statements(text) == ["CREATE TABLE t (\n  a INT,\n  b INT\n);"]


def test_last_statement_without_semicolon_is_kept() -> None:
    assert split_statements(b"ALTER TABLE t ADD c INT") == ["ALTER TABLE t ADD c INT"]


def test_words_containing_begin_are_not_blocks() -> None:
    assert split_statements(b"CREATE TABLE beginning (endless INT);") == ["CREATE TABLE beginning (endless INT);"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"CREATE TABLE t (a INT;", "unmatched left parenthesis"),
        (b"SELECT 1);", "unmatched right parenthesis"),
        (b"INSERT INTO t VALUES ('x);", "unmatched quotes"),
        (b"DO $$ BEGIN PERFORM 1; $$;", "unmatched BEGIN keyword"),
        # The tool does not count "_" as a word character, so an "end_" identifier reads as END: it refuses too.
        (b"CREATE TABLE t (end_time INT);", "unmatched END keyword"),
    ],
)
def test_files_the_tool_would_refuse_are_refused(text: bytes, message: str) -> None:
    with pytest.raises(SplitError, match=message):
        split_statements(text)
