"""Names of the built-in agents, and loading of custom ones (``package.module:Class``)."""

from __future__ import annotations

import importlib
import os
import sys

from agents.base import Agent
from bus.errors import InvalidArgument


def builtin_agents() -> dict[str, type[Agent]]:
    """The built-in agents by name, in start order."""
    from agents.ai_help import AIHelpAgent
    from agents.coordinator import AgentCoordinator
    from agents.heartbeat import HeartbeatHealthAgent
    from agents.langsmith_bridge import LangSmithBridge
    from agents.performance import PerformanceMonitor

    return {
        cls.name: cls
        for cls in (AgentCoordinator, HeartbeatHealthAgent, PerformanceMonitor, AIHelpAgent, LangSmithBridge)
    }


def resolve(spec: str) -> type[Agent]:
    """A built-in agent's name, or ``package.module:Class`` for your own."""
    builtins = builtin_agents()
    if spec in builtins:
        return builtins[spec]
    module_name, sep, attr = spec.partition(":")
    if not sep:
        raise InvalidArgument(
            f"unknown agent {spec!r}",
            hint=f"built-in agents: {', '.join(builtins)}; or give package.module:AgentClass",
        )
    if os.getcwd() not in sys.path:  # as uvicorn and celery do: your module, from your folder
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidArgument(
            f"cannot import {module_name!r}: {exc}", hint="is it installed, or on PYTHONPATH?"
        ) from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise InvalidArgument(
            f"{spec} is not an Agent subclass", hint="subclass agents.base.Agent and set its name"
        )
    if not cls.name:
        raise InvalidArgument(f"{spec} has no name", hint='set name = "my-agent" on the class')
    return cls
