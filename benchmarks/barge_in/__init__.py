"""The barge-in, turn-taking and load benchmark (entry point: ``bench_barge_in.py``)."""
