"""Measurements that run in their own processes; each prints one ``BENCH_RESULT`` JSON line."""
