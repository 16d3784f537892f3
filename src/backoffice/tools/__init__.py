"""Tools: `{prefix}/process`, `{prefix}/divide`, and the chat gateway `{prefix}/chat`."""
