"""Names of the built-in agents, and loading of custom ones (``package.module:Class``)."""

from __future__ import annotations

from agents.runtime.agent import Agent
from agents.runtime.loader import load_object
from bus.errors import InvalidArgument


def builtin_agents() -> dict[str, type[Agent]]:
    """The built-in agents by name, in start order."""
    from agents.builtin.ai_help import AIHelpAgent
    from agents.builtin.coordinator import AgentCoordinator
    from agents.builtin.heartbeat import HeartbeatHealthAgent
    from agents.builtin.langsmith_bridge import LangSmithBridge
    from agents.builtin.performance import PerformanceMonitor

    return {
        cls.name: cls
        for cls in (AgentCoordinator, HeartbeatHealthAgent, PerformanceMonitor, AIHelpAgent, LangSmithBridge)
    }


def resolve(spec: str) -> type[Agent]:
    """A built-in agent's name, or ``package.module:Class`` for your own."""
    builtins = builtin_agents()
    if spec in builtins:
        return builtins[spec]
    if ":" not in spec:
        raise InvalidArgument(
            f"unknown agent {spec!r}",
            hint=f"built-in agents: {', '.join(builtins)}; or give package.module:AgentClass",
        )
    cls = load_object(spec, what="agent", example="mypackage.agents:MyAgent")
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise InvalidArgument(
            f"{spec} is not an Agent subclass", hint="subclass agents.runtime.agent.Agent and set its name"
        )
    if not cls.name:
        raise InvalidArgument(f"{spec} has no name", hint='set name = "my-agent" on the class')
    return cls
