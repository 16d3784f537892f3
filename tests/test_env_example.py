"""`.env.example`, the configuration table (docs/configuration.md) and the code agree: every
variable of the table is in the file, and every variable the code reads is in the table."""

from __future__ import annotations

import fnmatch
import re

from backoffice.config import ENVIRONMENT
from tests.support import ROOT

#: A row of the configuration table: its first cell's `NAME`s.
ROW = re.compile(r"^\| (`[A-Z][A-Z0-9_*]*`(?:, `[A-Z][A-Z0-9_*]*`)*) \|", re.MULTILINE)
#: `environ.get("NAME"` or `environ["NAME"]`, in our code.
READ = re.compile(r"""environ(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]*)["']""")
#: Set in .env.example, or shown there commented out.
LISTED = re.compile(r"^#? ?([A-Z][A-Z0-9_]*)=", re.MULTILINE)
#: Variables we read that belong to the machine, not to the service, and keys of a
#: request's WSGI environ, which the pattern cannot tell from variables.
NOT_SETTINGS = {"PATH", "CONTENT_LENGTH", "REQUEST_METHOD"}


def table_variables() -> set[str]:
    page = (ROOT / "docs" / "configuration.md").read_text()
    return {name for cells in ROW.findall(page) for name in re.findall(r"`(.+?)`", cells)}


def variables_read() -> set[str]:
    sources = [*(ROOT / "src" / "backoffice").rglob("*.py"), ROOT / "deploy" / "gunicorn.conf.py"]
    read = {name for source in sources for name in READ.findall(source.read_text())}
    return (read | set(ENVIRONMENT)) - NOT_SETTINGS


def documented(name: str, patterns: set[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def test_every_variable_the_code_reads_is_in_the_configuration_table():
    table = table_variables()
    assert {"APP_ENV", "SECRET_KEY", "ADMIN_PASSWORD", "GRANIAN_*"} <= table  # parsed
    assert {name for name in variables_read() if not documented(name, table)} == set()


def test_every_variable_of_the_table_is_in_env_example():
    listed = set(LISTED.findall((ROOT / ".env.example").read_text()))
    missing = {
        pattern
        for pattern in table_variables()
        if not any(fnmatch.fnmatchcase(name, pattern) for name in listed)
    }
    assert missing == set()
    assert {name for name in listed if not documented(name, table_variables())} == set()
