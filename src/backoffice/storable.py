"""What every database the service runs on can store: text without U+0000.

PostgreSQL refuses NUL in `text` and `varchar` (and in `jsonb`, and in every bound text
parameter, even one only compared); SQLite stores it. So that a request is answered the
same on both, NUL is refused wherever a request carries text (see `conventions` and the
webhook gateway), before it reaches a query.
"""

from __future__ import annotations

NUL = "\x00"
NUL_MESSAGE = "must not contain U+0000 (NUL)"


def nul_path(value: object) -> str | None:
    """Where a string holding NUL is in a parsed JSON value (`lines.0.note`), or None.

    Object keys count as strings. Iterative: JSON may nest deeper than Python recurses.
    """
    pending: list[tuple[str, object]] = [("", value)]
    while pending:
        path, current = pending.pop()
        if isinstance(current, str):
            if NUL in current:
                return path
        elif isinstance(current, dict):
            for key, item in current.items():
                key_path = f"{path}.{key}" if path else str(key)
                if NUL in str(key):
                    return key_path
                pending.append((key_path, item))
        elif isinstance(current, list):
            pending.extend(
                (f"{path}.{index}" if path else str(index), item)
                for index, item in enumerate(current)
            )
    return None
