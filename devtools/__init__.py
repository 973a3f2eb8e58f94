"""Developer tools outside the test package: the throwaway local PostgreSQL cluster that scripts/demo.sh, the
benchmark (bench/) and the integration suite start."""
