"""Agents: the runtime, the built-in agents, the AI stack, benchmarks and the ``bgagents`` command line."""
