"""Per-user todos: `{prefix}/todos`."""
