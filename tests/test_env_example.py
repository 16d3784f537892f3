"""`.env.example`, the configuration page's tables (docs/configuration.md) and the code
agree: both files are what config.py's declaration generates, every variable of the
tables is in the file, and every variable the code reads is in the tables."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys

from backoffice import config_docs
from backoffice.config import Config
from tests.support import ROOT

#: A row of a configuration table: its first cell's `NAME`s.
ROW = re.compile(r"^\| (`[A-Z][A-Z0-9_*]*`(?:, `[A-Z][A-Z0-9_*]*`)*) \|", re.MULTILINE)
#: `environ.get("NAME"` or `environ["NAME"]`, in our code.
READ = re.compile(r"""environ(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]*)["']""")
#: Set in .env.example, or shown there commented out.
LISTED = re.compile(r"^#? ?([A-Z][A-Z0-9_]*)=", re.MULTILINE)
#: Variables we read that belong to the machine, not to the service, and keys of a
#: request's WSGI environ, which the pattern cannot tell from variables.
NOT_SETTINGS = {"PATH", "CONTENT_LENGTH", "REQUEST_METHOD", "PATH_INFO"}


def table_variables() -> set[str]:
    page = (ROOT / "docs" / "configuration.md").read_text()
    return {name for cells in ROW.findall(page) for name in re.findall(r"`(.+?)`", cells)}


def variables_read() -> set[str]:
    sources = [*(ROOT / "src" / "backoffice").rglob("*.py"), ROOT / "deploy" / "gunicorn.conf.py"]
    read = {name for source in sources for name in READ.findall(source.read_text())}
    return (read | set(Config.variables())) - NOT_SETTINGS


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


def test_the_configuration_page_and_env_example_are_what_the_declaration_writes():
    """Each setting is declared once (config.py); the files a person reads are written from
    it, so they cannot drift: when this fails, run the command it names."""
    assert config_docs.ROOT == ROOT
    behind = config_docs.stale()
    assert behind == [], f"{', '.join(behind)} behind src/backoffice/config.py: run `make settings`"


def test_every_setting_is_in_the_tables_with_its_default_and_bounds():
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert "| `SERVER_THREADS` | integer | `4` | 1 to 256 | Threads per" in page
    assert "| `LOG_JSON` | boolean | `true`; development: `false` | — |" in page
    assert (
        "| `TRUSTED_HOSTS` | comma-separated | `localhost,127.0.0.1`; production: unset |" in page
    )
    assert "\n# PROXY_FIX_X_FOR=0\n" in (ROOT / ".env.example").read_text()


def test_a_stale_file_is_named_with_the_command_that_writes_it(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    page, example = tmp_path / "docs" / "configuration.md", tmp_path / ".env.example"
    page.write_text(f"# Configuration\n\n{config_docs.MARKERS[0]}\n{config_docs.MARKERS[1]}\n")
    example.write_text("# SERVER_THREADS=4\n")
    root = ["--root", str(tmp_path)]

    assert config_docs.main(root) == 1
    assert capsys.readouterr().err.splitlines() == [
        "docs/configuration.md is behind config.py: run `make settings`",
        ".env.example is behind config.py: run `make settings`",
    ]
    assert config_docs.main([*root, "--write"]) == 0
    assert config_docs.main(root) == 0
    assert page.read_text().startswith("# Configuration\n\n")
    assert "\n| `SERVER_THREADS` | integer |" in page.read_text()
    assert example.read_text() == config_docs.env_example()


def test_the_command_runs_as_make_settings_runs_it():
    checked = subprocess.run(
        [sys.executable, "-m", "backoffice.config_docs"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert (checked.returncode, checked.stderr) == (0, "")
