"""Benchmarks of weft against raw PyTorch (and Lightning Fabric / Accelerate when installed).

Run ``python -m bench`` from the repository root; see :mod:`bench.run`.
"""
