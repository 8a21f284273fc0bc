"""Benchmarks: each bench_*.py module has main() -> markdown; `python -m bench.run` runs them all."""
