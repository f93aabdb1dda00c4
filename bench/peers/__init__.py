"""The servers the benchmark compares ours with; each reads the model from ``BENCH_*`` variables."""
