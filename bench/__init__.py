"""Benchmarks: ``make bench`` (``python -m bench``) runs them all against their baselines in
one run, prints each table and rewrites ``bench/RESULTS.md``. Not part of ``make test``."""
