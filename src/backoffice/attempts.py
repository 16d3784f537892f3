"""Per-IP limits that hold under any concurrency: failed logins, sign-ups.

Flask-Limiter's `deduct_when` counts a failure once it has been answered, so attempts
already in flight when the limit is reached all get their password checked (50 at once
gave 12 answers of 401 under a limit of 5). Here an attempt takes its place in the window
*before* any work is done, with one atomic increment in the limiter's storage (memory, or
Redis shared by every worker), and gives it back when its outcome does not count (a
successful login). So no more than the limit's worth of counted outcomes is ever
answered in one window, whatever the concurrency; attempts past it are 429 at once.

Windows are clock-aligned (a "per minute" window is a clock minute) and the window is
part of the key, so a place given back returns to the window it was taken from, never to
the next one.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import current_app
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse

from backoffice import metrics
from backoffice.errors import Conflict, TooManyRequests, Unauthorized, WrongPassword
from backoffice.extensions import limiter

View = TypeVar("View", bound=Callable[..., Any])

#: How long a process remembers a window it found full, in seconds. A window only frees
#: places when attempts in flight give theirs back (a right password, a crash): a client
#: may then be refused for this long after a place came free, never let in past the limit.
FULL_WINDOW_MEMORY = 1.0


class FullWindows:
    """The windows this process found full, until a moment each: a storm of attempts
    from one address is refused without asking the limiter's storage each time."""

    #: Windows remembered at most: past it, the ones over are forgotten (or all of them).
    CAPACITY = 10_000

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def __contains__(self, key: str) -> bool:
        until = self._until.get(key)
        return until is not None and until > time.time()

    def add(self, key: str, until: float) -> None:
        if len(self._until) >= self.CAPACITY:
            now = time.time()
            for known, moment in list(self._until.items()):
                if moment <= now:
                    self._until.pop(known, None)
            if len(self._until) >= self.CAPACITY:
                self._until.clear()
        self._until[key] = until


def full_windows() -> FullWindows:
    """The current app's (each app, like each process, remembers what it saw)."""
    found: FullWindows | None = current_app.extensions.get("full_windows")
    if found is None:
        found = current_app.extensions["full_windows"] = FullWindows()
    return found


@dataclass(frozen=True)
class AttemptLimit:
    """Attempts of one kind allowed per client IP, in the setting named `setting`."""

    name: str
    setting: str
    #: Outcomes (raised errors) that keep their place in the window.
    counted_errors: tuple[type[BaseException], ...]
    #: Whether a success keeps its place too (a sign-up does; a login does not).
    success_counts: bool
    #: What a client past the limit is told (the wait is appended).
    refusal: str
    #: Called with each outcome that keeps its place (to count it).
    on_counted: Callable[[BaseException], None] | None = None

    def item(self) -> RateLimitItem:
        return parse(str(current_app.config[self.setting]))

    @contextmanager
    def attempt(self, client: str) -> Iterator[None]:
        """Take a place for one attempt by `client` (429 if there is none left), and give
        it back when the block's outcome does not count."""
        item = self.item()
        seconds = item.get_expiry()
        now = time.time()
        window = int(now // seconds)
        key = item.key_for(self.name, client, str(window))
        # A full window is refused without a write: under a storm of refused attempts, a
        # write each (and one more to give the place back) queued them all on the counter's
        # row lock, and the reads served beside them fell to a twentieth of their rate.
        remembered = full_windows()
        full = key in remembered or limiter.storage.get(key) >= item.amount
        if full or limiter.storage.incr(key, seconds) > item.amount:
            if not full:  # lost the race for the last place: a refusal is not an attempt
                limiter.storage.incr(key, seconds, amount=-1)
            remembered.add(key, min(now + FULL_WINDOW_MEMORY, (window + 1) * seconds))
            metrics.count_rate_limited(self.name)
            wait = max(1, math.ceil((window + 1) * seconds - now))
            raise TooManyRequests(f"{self.refusal} Try again in {wait} seconds.", retry_after=wait)
        try:
            yield
        except self.counted_errors as error:
            if self.on_counted is not None:
                self.on_counted(error)
            raise
        except BaseException:
            limiter.storage.incr(key, seconds, amount=-1)
            raise
        if not self.success_counts:
            limiter.storage.incr(key, seconds, amount=-1)


def limit_attempts(
    limit: AttemptLimit, exempt: Callable[[], bool] = lambda: False
) -> Callable[[View], View]:
    """Decorate a view so each call is one attempt by the client's IP (unless `exempt()`).

    Put it above `@bp.input`, so a client past the limit is refused before its body is
    even read, and a body that fails the schema gives its place back.
    """

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def limited(*args: Any, **kwargs: Any) -> Any:
            if exempt():
                return view(*args, **kwargs)
            with limit.attempt(get_remote_address()):
                return view(*args, **kwargs)

        return limited  # type: ignore[return-value]

    return decorate


#: Password checks per client IP: a failed login, or a wrong `current_password` on a
#: password change, keeps its place; a right password gives it back.
PASSWORD_GUESSES = AttemptLimit(
    name="password",
    setting="LOGIN_RATE_LIMIT",
    counted_errors=(Unauthorized, WrongPassword),
    success_counts=False,
    refusal="Too many failed password attempts from your address.",
    on_counted=lambda _: metrics.count_login_failure(),
)
#: Sign-ups per client IP: a user created, or an email found taken (409), keeps its place.
SIGN_UPS = AttemptLimit(
    name="sign-up",
    setting="SIGNUP_RATE_LIMIT",
    counted_errors=(Conflict,),
    success_counts=True,
    refusal="Too many sign-ups from your address.",
)
