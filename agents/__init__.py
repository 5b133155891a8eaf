"""Agents: the runtime, the built-in agents and the ``bgagents`` command line."""
