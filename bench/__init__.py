"""Benchmarks of temporal-migrator against the bare temporal-sql-tool (see bench/run.py)."""
