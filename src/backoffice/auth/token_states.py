"""What the database last said about tokens and API keys, kept in process while it is
known to be current (PostgreSQL, `AUTH_CACHE`).

Every authenticated request asks the database about its credential: is the user still
active, at the token's generation, is the token (or its family) revoked; is the API key
live. The answer changes rarely, so each process keeps the answers it got, and the
database tells every process when one may have changed:

- **Triggers** (migration `f2b8d4c6a1e3`) `pg_notify('backoffice_auth', ...)` on every
  change that can end or narrow a credential: a user's `active`, `role` or
  `token_generation` changed, a user deleted (`user:<id>`), an API key changed or
  deleted (`key:<prefix>`), a token or family revoked (`revoked:<jti>`), a table
  truncated (`all`). They catch every ordinary path (the ORM, Core, an operator's
  psql), and PostgreSQL delivers a notification only once its transaction has
  committed, so it never precedes the change it announces.
- **A maximum age** (`AUTH_CACHE_MAX_AGE`) for the paths no trigger sees: a change
  applied with `session_replication_role = replica` (logical replication,
  `pg_restore --disable-triggers`) or with the trigger disabled and enabled again inside
  one transaction. An entry older than it is dropped when read, and the database asked
  again: such a change holds everywhere within the maximum age (plus a query that was
  running as it committed), for at most one query per credential per maximum age.
- **A listener thread per process** (its own connection, `LISTEN backoffice_auth`)
  evicts the entries each notification names.
- **Race-free fills**: every notification (and every local eviction) increments an
  epoch. A fill reads the epoch before its query and stores its answer only if the
  epoch is unchanged after it; a change that committed while the query ran is thus
  never cached (the request it served is answered, the next one asks again).
- **Fail safe**: while the listener is not connected (not yet, lost, reconnecting) or
  has not been heard from for `STALE_AFTER_SECONDS` (a silent network loss, a starved
  thread), or while the triggers are not all in place and enabled (checked on connecting
  and at every heartbeat: a database not yet migrated), the cache is emptied and
  bypassed: every request asks the database, which itself fails closed (503) when it
  does not answer. After a reconnect it starts empty.
- **The serving process** evicts before it answers (`forget_*`, called by the services
  after their commit), so the change holds at once there; elsewhere it holds once the
  notification has arrived (measured in docs/api/auth-and-users.md).

Only answers that let a caller in are kept; a refusal is asked again every time. The
listener starts on first use in the process that serves (a server forks its workers
after importing the app), and again in a forked child.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import psycopg
import structlog
from sqlalchemy.engine import URL

log = structlog.get_logger(__name__)

CHANNEL = "backoffice_auth"
#: How the listener's connection is named in `pg_stat_activity` (with its process id).
APPLICATION_NAME = "backoffice-auth-listener"
#: The triggers of migration f2b8d4c6a1e3: unless every one is there and enabled, a change
#: could go unannounced, and the cache is not used.
TRIGGERS = (
    "backoffice_auth_user_updated",
    "backoffice_auth_user_deleted",
    "backoffice_auth_key_updated",
    "backoffice_auth_key_deleted",
    "backoffice_auth_token_revoked",
    "backoffice_auth_users_truncated",
    "backoffice_auth_api_keys_truncated",
)
TRIGGERS_ENABLED = "SELECT count(*) FROM pg_trigger WHERE tgname = ANY(%s) AND tgenabled <> 'D'"
#: How often the listener proves its connection alive (and the triggers in place).
HEARTBEAT_SECONDS = 1.0
#: A listener not heard from for this long is taken for lost: the cache is bypassed.
STALE_AFTER_SECONDS = 3.0
#: Waits between reconnection attempts: doubled after each failure, up to the last.
RECONNECT_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)
#: Entries kept per kind (tokens, API keys): a few hundred bytes each.
SIZE = 8192

#: A JWT's entry: (user id, jti checked, family key, generation).
TokenKey = tuple[uuid.UUID, str, str, int]


class TokenStates:
    """The per-process view: entries, the epoch, and whether the listener vouches for it.

    One per app, shared by its threads; every change is made under one lock. Entries are
    kept with the time they were filled, and served up to `max_age` seconds after it.
    `clock` is for tests of the staleness and age rules.
    """

    def __init__(
        self,
        listen: Callable[[TokenStates], None] | None,
        *,
        max_age: float,
        size: int = SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._listen = listen
        self._size = size
        self._clock = clock
        self._max_age = max_age
        self._lock = threading.Lock()
        self._epoch = 0
        self._connected = False
        self._alive_at = 0.0
        #: Entries: (what the database said, when it was filled).
        self._tokens: OrderedDict[TokenKey, tuple[Any, float]] = OrderedDict()
        self._keys: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        #: Which entries a user's change ends, and which a jti's or family's revocation.
        self._tokens_of: dict[uuid.UUID, set[TokenKey]] = {}
        self._keys_of: dict[uuid.UUID, set[str]] = {}
        self._by_revocation: dict[str, set[TokenKey]] = {}
        self._pid: int | None = None
        self.listener: Listener | None = None
        _CACHES.add(self)

    # --- reading and filling ---------------------------------------------------

    def epoch(self) -> int | None:
        """The epoch a fill starts from, or None while the cache may not be trusted (then
        nothing is read from it nor stored in it)."""
        if self._pid != os.getpid():
            self._start()
        with self._lock:
            if not self._connected:
                return None
            if self._clock() - self._alive_at > STALE_AFTER_SECONDS:
                self._clear()
                return None
            return self._epoch

    def token(self, key: TokenKey) -> Any | None:
        """The kept answer for `key`, unless none is kept or it is past its maximum age
        (then it is dropped, and the caller asks the database)."""
        with self._lock:
            found = self._tokens.get(key)
            if found is None:
                return None
            if self._clock() - found[1] > self._max_age:
                self._drop_token(key)
                return None
            self._tokens.move_to_end(key)
            return found[0]

    def api_key(self, prefix: str) -> Any | None:
        """The kept row of the key `prefix`, as `token` does."""
        with self._lock:
            found = self._keys.get(prefix)
            if found is None:
                return None
            if self._clock() - found[1] > self._max_age:
                self._drop_key(prefix)
                return None
            self._keys.move_to_end(prefix)
            return found[0]

    def store_token(self, epoch: int, key: TokenKey, value: Any) -> bool:
        """Keep `value` for `key` if nothing changed since `epoch` was read."""
        with self._lock:
            if not self._connected or epoch != self._epoch:
                return False
            self._tokens[key] = (value, self._clock())
            self._index(self._tokens_of, key[0], key)
            for revocation in key[1:3]:
                self._index(self._by_revocation, revocation, key)
            if len(self._tokens) > self._size:
                self._drop_token(next(iter(self._tokens)))
            return True

    def store_api_key(self, epoch: int, prefix: str, user_id: uuid.UUID, value: Any) -> bool:
        """Keep `value` for the key `prefix` if nothing changed since `epoch` was read."""
        with self._lock:
            if not self._connected or epoch != self._epoch:
                return False
            self._keys[prefix] = (value, self._clock())
            self._index(self._keys_of, user_id, prefix)
            if len(self._keys) > self._size:
                self._drop_key(next(iter(self._keys)))
            return True

    def replace_api_key(self, prefix: str, value: Any) -> None:
        """Update a kept key (its `last_used_at`, written by this process), if still kept.
        The entry keeps its age: the rest of the row is still what the fill read."""
        with self._lock:
            found = self._keys.get(prefix)
            if found is not None:
                self._keys[prefix] = (value, found[1])

    @staticmethod
    def _index(index: dict[Any, set[Any]], name: Any, entry: Any) -> None:
        index.setdefault(name, set()).add(entry)

    # --- evicting ----------------------------------------------------------------

    def notified(self, payload: str) -> None:
        """A notification from the triggers (or a local change): evict what it names.
        Anything not understood empties the whole cache."""
        kind, _, name = payload.partition(":")
        with self._lock:
            self._epoch += 1
            if kind == "user":
                try:
                    self._forget_user(uuid.UUID(name))
                except ValueError:
                    self._clear()
            elif kind == "key":
                self._drop_key(name)
            elif kind == "revoked":
                for key in self._by_revocation.pop(name, set()):
                    self._drop_token(key)
            else:
                self._clear()

    def forget_user(self, user_id: uuid.UUID) -> None:
        self.notified(f"user:{user_id}")

    def forget_api_key(self, prefix: str) -> None:
        self.notified(f"key:{prefix}")

    def forget_revoked(self, jti: str) -> None:
        self.notified(f"revoked:{jti}")

    def _forget_user(self, user_id: uuid.UUID) -> None:
        for key in self._tokens_of.pop(user_id, set()):
            self._drop_token(key)
        for prefix in self._keys_of.pop(user_id, set()):
            self._keys.pop(prefix, None)

    def _drop_token(self, key: TokenKey) -> None:
        self._tokens.pop(key, None)
        self._unindex(self._tokens_of, key[0], key)
        for revocation in key[1:3]:
            self._unindex(self._by_revocation, revocation, key)

    def _drop_key(self, prefix: str) -> None:
        found = self._keys.pop(prefix, None)
        if found is not None:
            self._unindex(self._keys_of, found[0].user_id, prefix)

    @staticmethod
    def _unindex(index: dict[Any, set[Any]], name: Any, entry: Any) -> None:
        entries = index.get(name)
        if entries is not None:
            entries.discard(entry)
            if not entries:
                del index[name]

    def _clear(self) -> None:
        self._epoch += 1
        self._tokens.clear()
        self._keys.clear()
        self._tokens_of.clear()
        self._keys_of.clear()
        self._by_revocation.clear()

    def __len__(self) -> int:
        return len(self._tokens) + len(self._keys)

    # --- the listener's side -----------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    def listening(self) -> None:
        """The listener is connected and listening: start afresh, trusted."""
        with self._lock:
            self._clear()
            self._connected = True
            self._alive_at = self._clock()

    def alive(self) -> None:
        """The listener's connection just answered: every notification committed before
        has been handled."""
        self._alive_at = self._clock()

    def lost(self) -> None:
        """The listener is not connected: empty and bypass the cache until it is again."""
        with self._lock:
            self._connected = False
            self._clear()

    def _start(self) -> None:
        """Start this process's listener, on first use (in a forked child too: a thread
        does not survive a fork, and the parent's connection is not the child's)."""
        with _STARTING:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            if self._listen is not None:
                self._listen(self)

    def _forked(self) -> None:
        """In a forked child: nothing the parent knew or held (its lock may have been
        taken by a thread that does not exist here) is trusted."""
        self._lock = threading.Lock()
        self._pid = None
        self._connected = False
        self._clear()

    def stop(self) -> None:
        """Stop the listener (an app being closed: tests build many)."""
        if self.listener is not None:
            self.listener.stop()
        self.lost()


#: Starting a listener, once per process and cache.
_STARTING = threading.Lock()
_CACHES: weakref.WeakSet[TokenStates] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _STARTING
    _STARTING = threading.Lock()
    for states in list(_CACHES):
        states._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


class TriggersMissing(Exception):
    """The database does not announce every change (not migrated, a trigger disabled)."""


class Listener:
    """The thread that keeps a `TokenStates` current: LISTEN, evict, reconnect."""

    def __init__(self, states: TokenStates, conninfo: str) -> None:
        self.states = states
        self.conninfo = conninfo
        self.backend_pid: int | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="auth-listener", daemon=True)
        # A duplicate of the listening connection's socket, for `stop` to wake the thread
        # from its wait for notifications (up to a heartbeat: a second per closed app in
        # the tests, which close hundreds). Held under the lock, so it is never shut down
        # after the thread closed it and its number went to another file.
        self._waking = threading.Lock()
        self._socket: socket.socket | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._waking:
            if self._socket is not None:
                self._socket.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            try:
                with psycopg.connect(
                    self.conninfo,
                    autocommit=True,
                    connect_timeout=5,
                    application_name=f"{APPLICATION_NAME} pid={os.getpid()}",
                    # A peer gone without a word is found out in seconds, not hours (the
                    # cache is bypassed meanwhile: STALE_AFTER_SECONDS).
                    keepalives=1,
                    keepalives_idle=5,
                    keepalives_interval=2,
                    keepalives_count=3,
                ) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self._check_triggers(connection)
                    self.backend_pid = connection.info.backend_pid
                    self.states.listening()
                    if failures:
                        log.info("auth_cache_listening", failures=failures)
                    failures = 0
                    self._listen_waking(connection)
            except Exception as error:
                if self._stopped.is_set():
                    break  # woken by `stop`: the connection's end is ours, not a loss
                # Expected: psycopg.Error (the server restarted, the connection was lost).
                # Anything else is a bug, logged with its traceback; either way the cache
                # is bypassed until a new connection listens.
                self.states.lost()
                if isinstance(error, TriggersMissing):
                    if not failures:
                        log.warning(
                            "auth_cache_unused",
                            reason="the auth notification triggers are missing or disabled; "
                            "run `flask db upgrade`",
                        )
                elif not isinstance(error, psycopg.Error):
                    log.exception("auth_cache_listener_failed")
                elif not failures:
                    log.warning("auth_cache_listener_lost", error=type(error).__name__)
                failures += 1
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS)) - 1]
                self._stopped.wait(delay)
        self.states.lost()

    def _listen_waking(self, connection: psycopg.Connection[Any]) -> None:
        """`_listen`, with the connection's socket where `stop` can shut it down."""
        with self._waking:
            self._socket = socket.socket(fileno=os.dup(connection.pgconn.socket))
        try:
            self._listen(connection)
        finally:
            with self._waking:
                self._socket.close()
                self._socket = None

    def _listen(self, connection: psycopg.Connection[Any]) -> None:
        while not self._stopped.is_set():
            for notification in connection.notifies(timeout=HEARTBEAT_SECONDS):
                self.states.notified(notification.payload)
            self._check_triggers(connection)  # raises once the connection is lost
            for notification in connection.notifies(timeout=0):  # what came with it
                self.states.notified(notification.payload)
            self.states.alive()

    @staticmethod
    def _check_triggers(connection: psycopg.Connection[Any]) -> None:
        found = connection.execute(TRIGGERS_ENABLED, [list(TRIGGERS)]).fetchone()
        if found is None or found[0] != len(TRIGGERS):
            raise TriggersMissing


def listener_conninfo(url: URL) -> str:
    """The psycopg connection string for the app's database URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def token_states_for(url: URL, enabled: bool, max_age: float) -> TokenStates | None:
    """The cache for an app on `url`, or None (off, or not PostgreSQL with psycopg)."""
    if not enabled or url.get_backend_name() != "postgresql" or url.get_driver_name() != "psycopg":
        return None
    conninfo = listener_conninfo(url)

    def listen(states: TokenStates) -> None:
        states.listener = Listener(states, conninfo)
        states.listener.start()

    return TokenStates(listen, max_age=max_age)
