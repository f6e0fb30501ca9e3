"""contentlib's benchmarks. The entry point is `python bench/run.py` (`make bench`); one module per section."""
