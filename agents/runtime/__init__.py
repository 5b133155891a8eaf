"""The agent runtime: the ``Agent`` base and its config, the supervisor, the registry, signals and loading."""
