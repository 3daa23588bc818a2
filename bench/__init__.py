"""Benchmarks for minigpt4: matmul peak, training step, data pipeline, chat, and a full-size GPU mode.

Run ``python -m bench.run --help``; results and how to reproduce them are in ``BENCHMARKS.md``.
"""
