"""Repository-root conftest: puts the repository root on sys.path so tests can import
``definitions`` (the Dagster code location) as ``dagster dev`` does."""
