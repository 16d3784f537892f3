"""People and their roles: `{prefix}/users`."""
