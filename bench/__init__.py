"""keypool benchmarks: `.venv/bin/python -m bench.run [--quick]` (see bench/README.md)."""
