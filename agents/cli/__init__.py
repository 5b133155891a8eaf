"""The ``bgagents`` command line: the root group in ``root``, one module per command family.

This is the composition root of the system: the one package that may start the
web server (``agents.cli.webserver``) next to the agents.
"""
