"""Which requests the server's front runs on threads of their own (`serving.Lane`): the
app's decision, made here from its URL map and its settings, so the front stays generic.

One lane, `login`: the endpoints where anonymous password guesses arrive, each throttled
by `attempts.PASSWORD_GUESSES` (`POST {prefix}/auth/token`, the console's sign-in). A storm
of guesses is mostly refused with 429 at a fraction of a read's cost, but answered fast,
its clients send many of them for every read: on the shared threads it took most of their
time. On `SERVER_AUTH_THREADS` threads of its own it waits behind itself, and the shared
`SERVER_THREADS` stay for everything else (docs/operations/isolation.md).
"""

from __future__ import annotations

from flask import Flask

from backoffice.serving import Lane

#: The endpoints of the login lane. An endpoint renamed without this list is an error at
#: start-up (`lanes`), not a lane that silently stopped covering it.
LOGIN_ENDPOINTS = frozenset({"auth.token", "console.sign_in"})


def lanes(app: Flask) -> list[Lane]:
    """The lanes of `app`'s requests, as `serving.ThreadedWSGI` takes them."""
    paths = {rule.endpoint: rule.rule for rule in app.url_map.iter_rules()}
    missing = sorted(LOGIN_ENDPOINTS - paths.keys())
    if missing:
        raise LookupError(f"no route for the login lane's endpoints {missing}")
    login = Lane(
        "login",
        prefixes=tuple(sorted(paths[endpoint] for endpoint in LOGIN_ENDPOINTS)),
        threads=app.config["SERVER_AUTH_THREADS"],
        queue=app.config["SERVER_AUTH_QUEUE"],
    )
    return [login]
