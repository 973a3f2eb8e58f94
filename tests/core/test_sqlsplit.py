from __future__ import annotations

import pytest

from migrator.core.sqlsplit import SplitError, split_statements


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


def test_newer_releases_do_blocks_with_if_and_loop_split_as_one_statement() -> None:
    text = (
        b"DO $$\nDECLARE r RECORD;\nBEGIN\n  FOR r IN SELECT 1 LOOP\n    IF true THEN\n      PERFORM 1;\n"
        b"    END IF;\n  END LOOP;\nEND $$;\nCREATE INDEX CONCURRENTLY IF NOT EXISTS ix ON t (a);"
    )
    statements = split_statements(text)
    assert len(statements) == 2
    assert statements[0].startswith("DO $$")
    assert statements[0].endswith("END $$;")
    assert statements[1] == "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix ON t (a);"


def test_older_releases_create_extension_if_not_exists_still_splits() -> None:
    # The v1.31 rules would open a block at this IF; the v1.22-v1.29 rules split it, as those tools do.
    assert split_statements(b"CREATE EXTENSION IF NOT EXISTS btree_gin;\nCREATE TABLE t (a INT);") == [
        "CREATE EXTENSION IF NOT EXISTS btree_gin;",
        "CREATE TABLE t (a INT);",
    ]


def test_rules_that_disagree_are_refused() -> None:
    with pytest.raises(SplitError, match="disagree"):
        split_statements(b"SELECT 1 $$; SELECT 2 $$;")
