"""The failover benchmark (entry point: ``bench_failover.py``)."""
