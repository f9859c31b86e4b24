"""Incremental view maintenance: propagating deletions to every stored artifact."""
