"""The REST API, live feeds and dashboard (aiohttp)."""
