"""Dataplane backends and I/O adapters of kservice (found through entry points)."""
