"""Namespace integration tests (package, so module names never clash with agent/tests)."""
