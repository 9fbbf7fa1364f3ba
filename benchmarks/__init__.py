"""Benchmark scripts; results go to RESULTS.md (people) and results.json (machines)."""
