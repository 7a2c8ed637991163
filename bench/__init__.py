"""Benchmarks for IPAdapter Suite (run as scripts; see bench/README.md)."""
