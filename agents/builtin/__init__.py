"""The built-in agents: coordinator, heartbeat health, performance, ai-help and the LangSmith bridge."""
