"""The operator console: the back office in a browser, at /console.

Server-rendered pages (Jinja templates, one blueprint) over the same services the API
calls: no rule is written here. Forms work without JavaScript; `console.js` only
refreshes what changes by itself (a running job's progress). Every asset is the app's own.
Each module below adds its pages to the blueprint (`pages.bp`).
"""

from backoffice.console import items, jobs, keys, orders, routes, todos, users, webhooks
from backoffice.console.pages import bp

__all__ = ["bp", "items", "jobs", "keys", "orders", "routes", "todos", "users", "webhooks"]
