"""Shared infrastructure: registry, config, distribution, logging, LR schedules, checkpoint table."""

from minigpt4.common import optims  # noqa: F401  (registers the LR schedulers)
