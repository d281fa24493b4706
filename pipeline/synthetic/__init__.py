"""Generators of synthetic inputs with the real formats, for demos, tests and benchmarks."""
