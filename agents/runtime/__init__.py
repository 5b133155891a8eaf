"""The agent runtime: the ``Agent`` base and its config, the supervisor, the registry, signals and loading.

Your own agents subclass :class:`Agent`: ``from agents.runtime import Agent``.
"""

from agents.runtime.agent import Agent

__all__ = ["Agent"]
