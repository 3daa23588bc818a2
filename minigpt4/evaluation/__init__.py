"""Evaluation: benchmark annotation readers, metrics, and the resumable prediction store of ``evaluate.py``."""
