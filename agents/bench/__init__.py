"""Benchmarks a user can run (``bgagents bench ...``): one module per benchmark."""
