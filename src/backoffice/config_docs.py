"""The configuration page's tables and `.env.example`, written from `config`'s declaration.

    python -m backoffice.config_docs           # exit 1, naming each file that is behind
    python -m backoffice.config_docs --write   # write them again (`make settings`)

docs/configuration.md is prose around a generated block, between the two `MARKERS`:
the prose is edited by hand, the block only by this command. `.env.example` is generated
whole. `tests/test_env_example.py` fails while either is not what this writes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic.fields import FieldInfo

from backoffice.config import PROCESS_VARIABLES, PROFILES, Config, bounds, extra

#: The repository's root, where the two files live (this is a tool of the checkout).
ROOT = Path(__file__).resolve().parents[2]
PAGE, ENV_EXAMPLE = "docs/configuration.md", ".env.example"
COMMAND = "make settings"
MARKERS = (
    f"<!-- settings: generated from src/backoffice/config.py by `{COMMAND}`; edit that -->",
    "<!-- settings: end of the generated tables -->",
)

#: A Markdown link, `[text](page.md#anchor)`: only its text is kept in `.env.example`.
LINK = re.compile(r"\[([^]]+)\]\([^)]+\)")


@dataclass(frozen=True)
class Row:
    """One variable as both files show it."""

    variable: str
    kind: str
    default: str
    #: Each profile's own default, where it differs from the declared one.
    by_profile: str
    bounds: str
    description: str
    line: str


def env_text(value: Any) -> str:
    """A value as a variable would spell it: the inverse of what the settings parse."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return str(int(value.total_seconds()))
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | frozenset | set):
        return ",".join(value if isinstance(value, list) else sorted(value))
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _kind(field: FieldInfo) -> str:
    annotation = field.annotation
    if get_origin(annotation) is Literal:
        return "choice"
    kinds = {bool: "boolean", int: "integer", float: "number", str: "text"}
    for member in (annotation, *get_args(annotation)):
        if member in kinds:
            return kinds[member]
        if member is timedelta:
            return "integer (seconds)"
        if get_origin(member) in (list, frozenset):
            return "comma-separated"
        if get_origin(member) is dict:
            return "JSON object"
    return "text"


def _bounds_text(field: FieldInfo) -> str:
    if get_origin(field.annotation) is Literal:
        return ", ".join(f"`{choice}`" for choice in get_args(field.annotation))
    limits = bounds(field)
    if "ge" in limits and "le" in limits:
        parts = [f"{limits['ge']} to {limits['le']}"]
    else:
        signs = (("ge", "≥"), ("gt", ">"), ("le", "≤"))
        parts = [f"{sign} {limits[key]}" for key, sign in signs if key in limits]
    if "max_length" in limits:
        parts.append(f"≤ {limits['max_length']} characters")
    unit = extra(field, "unit")
    return ", ".join(parts) + (f" {unit}" if unit and parts else "")


def _shown(value: Any) -> str:
    text = env_text(value)
    return f"`{text}`" if text else "unset"


def _by_profile(name: str, field: FieldInfo) -> str:
    """Each profile's own default, where it differs from the declared one."""
    return "; ".join(
        f"{profile_name}: {_shown(profile.defaults[name])}"
        for profile_name, profile in PROFILES.items()
        if name in profile.defaults and profile.defaults[name] != field.default
    )


def sections() -> dict[str, list[Row]]:
    """Every variable, by section, in the declaration's order; process variables first."""
    grouped: dict[str, list[Row]] = {}
    section = ""
    variables = {setting: variable for variable, setting in Config.variables().items()}
    for name, field in Config.model_fields.items():
        section = extra(field, "section") or section
        rows = grouped.setdefault(section, [])
        if not rows:
            rows.extend(
                Row(v.name, "", v.default, "", "", v.description, v.line)
                for v in PROCESS_VARIABLES
                if v.section == section
            )
        value = env_text(field.default) or (field.examples[0] if field.examples else "")
        rows.append(
            Row(
                variables[name],
                _kind(field),
                _shown(field.default),
                _by_profile(name, field),
                _bounds_text(field),
                field.description or "",
                f"{variables[name]}={value}",
            )
        )
    return grouped


def tables() -> str:
    """The generated block of the configuration page."""
    lines = [MARKERS[0]]
    for section, rows in sections().items():
        lines += ["", f"### {section}", ""]
        lines += ["| Variable | Type | Default | Bounds | Description |", "|---|---|---|---|---|"]
        lines += [
            f"| `{row.variable}` | {row.kind or '—'} "
            f"| {'; '.join(filter(None, (row.default, row.by_profile)))} "
            f"| {row.bounds or '—'} | {row.description} |"
            for row in rows
        ]
    return "\n".join([*lines, "", MARKERS[1]])


def page(current: str) -> str:
    """The configuration page with its generated block written again."""
    head, begin, rest = current.partition(MARKERS[0])
    _, end, tail = rest.partition(MARKERS[1])
    if not (begin and end):
        raise SystemExit(f"{PAGE}: its markers are missing: {MARKERS}")
    return head + tables() + tail


def env_example() -> str:
    """`.env.example`: every variable, commented out, with what it means."""
    lines = [
        f"# Generated from src/backoffice/config.py by `{COMMAND}`: edit the declaration, not",
        "# this file. Every variable of docs/configuration.md, with its default (or an example).",
        "# `cp .env.example .env`, then uncomment and change what you need: `flask`, `make run`,",
        "# the WSGI app and the Celery worker read .env from the working directory (the",
        "# environment wins over it).",
    ]
    for section, rows in sections().items():
        lines += ["", f"# --- {section} ".ljust(88, "-")]
        for row in rows:
            meaning = row.description + (f" Profiles: {row.by_profile}." if row.by_profile else "")
            meaning = LINK.sub(r"\1", meaning).replace("`", "")
            lines += textwrap.wrap(meaning, width=88, initial_indent="# ", subsequent_indent="# ")
            lines.append(f"# {row.line}")
    return "\n".join(lines) + "\n"


def written(root: Path = ROOT) -> dict[str, str]:
    """Each file (relative to `root`) as the declaration writes it."""
    return {PAGE: page((root / PAGE).read_text()), ENV_EXAMPLE: env_example()}


def stale(root: Path = ROOT) -> list[str]:
    """The files that are not what the declaration writes."""
    return [name for name, text in written(root).items() if (root / name).read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backoffice.config_docs")
    parser.add_argument("--write", action="store_true", help="write the files again")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout (this one)")
    options = parser.parse_args(argv)
    if options.write:
        for name, text in written(options.root).items():
            (options.root / name).write_text(text)
        return 0
    behind = stale(options.root)
    for name in behind:
        print(f"{name} is behind config.py: run `{COMMAND}`", file=sys.stderr)
    return 1 if behind else 0


if __name__ == "__main__":
    raise SystemExit(main())
