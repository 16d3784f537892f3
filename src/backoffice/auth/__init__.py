"""Tokens and API keys: `{prefix}/auth/...`."""
