"""The web dashboard, JSON API and SSE feeds (aiohttp)."""
