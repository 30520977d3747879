"""Benchmarks that run vigil and keepalived side by side on the same lab topology.

``python -m bench.failover`` measures client-observed outages per failure type,
``python -m bench.cpu`` CPU time and RSS of 50 instances, ``python -m bench.plot`` draws
the failover results. See docs/benchmarks.md.
"""
