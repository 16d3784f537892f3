"""Every shell example in the docs (docs/**/*.md and the README) runs, against a real server.

The server is started as `make run` starts it (`python -m backoffice.run`: migrations, the
first admin, Granian and a Celery worker on the embedded broker, SQLite in a temporary
instance folder), once for the module, with the settings the pages say `make run` was
started with. Each page's ```bash blocks run in order in one bash session
(`set -euo pipefail`), so a variable set in one block is there in the next; a block fails
when any of its commands does. Where a block shows its output in a comment (`# {"result":
5.0}`, `# 204`, `# HTTP/1.1 204 No Content`, `# allow: ...`) or in a ```json/```text block
right after it, the parts that do not change from run to run are checked in what it
printed. A block that cannot run here carries `<!-- not-runnable: reason -->` on the line
just above its fence. SQLite only: the examples show the API, which answers the same on
either database.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.fake_llm import serving
from tests.support import ROOT, eventually, free_port, healthy, process_environment

#: Blocks marked not-runnable today. A new one is a decision: check its reason, then count it.
NOT_RUNNABLE = 16

#: What the pages say `make run` was started with (the admin, the acme webhook secret, the
#: fake model server, the CORS origin); `METRICS_TOKEN` is read from `.env` by the page.
ADMIN = {"ADMIN_EMAIL": "admin@example.com", "ADMIN_PASSWORD": "change-me-please"}
SETTINGS = {
    **ADMIN,
    "WEBHOOK_SECRETS": '{"acme": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}',
    "LLM_MODEL": "fake-model",
    "LLM_API_KEY": "sk-local-demo",
    "CORS_ORIGINS": "http://localhost:3000",
    "METRICS_TOKEN": "docs-examples-metrics-token-0123456789abcdef",
}
#: The addresses the pages use, and what stands for them here.
DOCS_SERVER = "127.0.0.1:5000"
DOCS_MODEL_SERVER = "127.0.0.1:8001"

FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*not-runnable:(?P<reason>.*?)-->\s*$")
SHELL = {"bash", "sh", "shell", "zsh"}
OUTPUT = {"json", "text", "console"}
#: A comment that shows output: it starts with what a command prints.
COMMENT = re.compile(r"(?:^|\s)#\s(?P<text>.*)$")
SHOWN = re.compile(r'^(?:[{"\[]|\d{3}\b|HTTP/)')
PAIR = re.compile(r'"[A-Za-z_]+":\s*(?:"[^"]*"|-?\d+(?:\.\d+)?|true|false|null)')
STATUS = re.compile(r"^(?:HTTP/[\d.]+ )?(?P<status>[1-5]\d\d)\b")
HEADER = re.compile(r"^(?P<name>[a-z][a-z-]+): (?P<value>.+)$")
TIMEOUT = 180


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    reason: str | None = None  # not-runnable, and why
    expected: list[str] = field(default_factory=list)  # what its output must hold
    statuses: list[str] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page.name
        return f"{page}:{self.line}"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def fenced(text: str) -> Iterator[tuple[int, str, str, str | None]]:
    """Each fenced block of `text`: its fence's line (1-based), language, body (indent
    removed) and the line above the fence. A longer fence holds shorter ones as text."""
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        body: list[str] = []
        end = index + 1
        while end < len(lines):
            closing = FENCE.match(lines[end])
            if closing and closing["fence"].startswith(fence) and not closing["lang"]:
                break
            body.append(lines[end][indent:] if lines[end][:indent].isspace() else lines[end])
            end += 1
        above = lines[index - 1] if index else None
        yield index + 1, opening["lang"].lower(), "\n".join(body), above
        index = end + 1


def output_shown(text: str) -> tuple[list[str], list[str], list[str]]:
    """The JSON pairs, statuses and header lines a comment or output block shows; what
    holds `...` (a value that changes) is left out."""
    pairs: list[str] = []
    statuses: list[str] = []
    headers: list[str] = []
    for shown in text.split("\n"):
        shown = shown.strip()
        if status := STATUS.match(shown):
            statuses.append(status["status"])
        if HEADER.match(shown) and "..." not in shown:
            headers.append(header_line(shown))
        pairs += [normal(pair) for pair in PAIR.findall(shown) if "..." not in pair]
    if not any(line.strip().startswith("HTTP/") for line in text.split("\n")):
        headers = []  # header lines are shown after a status line, or not at all
    return pairs, statuses, headers


def comments_shown(code: str) -> str:
    """The comments of `code` that show output, one a line."""
    shown = []
    for line in code.split("\n"):
        comment = COMMENT.search(line) if not line.lstrip().startswith("#") else None
        text = line.lstrip()[1:].strip() if line.lstrip().startswith("#") else None
        text = text if text is not None else (comment["text"].strip() if comment else "")
        if SHOWN.match(text) or HEADER.match(text):
            shown.append(text)
    return "\n".join(shown)


def header_line(line: str) -> str:
    """A header line to compare: lower case, a list's members in order (`Allow` comes in
    any order)."""
    name, _, value = line.strip().lower().partition(": ")
    return f"{name}: {', '.join(sorted(part.strip() for part in value.split(',')))}"


def normal(json_text: str) -> str:
    return re.sub(r'":\s+', '":', json_text)


def blocks(page: Path) -> list[Block]:
    found: list[Block] = []
    previous: Block | None = None
    for line, lang, body, above in fenced(page.read_text()):
        if lang in SHELL:
            marker = MARKER.match(above or "")
            block = Block(page, line, lang, body, marker["reason"].strip() if marker else None)
            block.expected, block.statuses, block.headers = output_shown(comments_shown(body))
            found.append(block)
            previous = block
        elif lang in OUTPUT and previous is not None and previous.reason is None:
            pairs, _, _ = output_shown(body)
            previous.expected += pairs
            previous = None
        else:
            previous = None
    return found


def every_block() -> list[Block]:
    return [block for page in pages() for block in blocks(page)]


# --- the markers, without a server ---------------------------------------------------


def test_every_shell_example_is_a_bash_block():
    others = [block.where for block in every_block() if block.lang != "bash"]
    assert others == [], "fence shell examples as ```bash, so that they run"


def test_every_not_runnable_marker_says_why_and_sits_on_a_bash_block():
    markers = []
    for page in pages():
        lines = page.read_text().split("\n")
        for number, line in enumerate(lines[:-1], start=1):
            if "not-runnable" in line:
                markers.append((page, number, line, lines[number]))
    assert markers
    for page, number, line, below in markers:
        where = f"{page.relative_to(ROOT)}:{number}"
        marker = MARKER.match(line)
        assert marker, f"{where}: write it as <!-- not-runnable: reason -->"
        assert len(marker["reason"].strip()) >= 10, f"{where}: say why it cannot run"
        assert below.strip() == "```bash", f"{where}: the marker goes just above a ```bash fence"
    found = every_block()
    assert len([block for block in found if block.reason is None]) >= 15  # the parser works
    marked = len([block for block in found if block.reason is not None])
    assert marked == NOT_RUNNABLE, (
        f"{marked} blocks are marked not-runnable, {NOT_RUNNABLE} were: "
        "run the new one if it can, or count it here"
    )


def test_the_parser_reads_fences_markers_and_shown_output(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- not-runnable: serves until Ctrl-C -->\n```bash\nmake run\n```\n\n"
        "````markdown\n```bash\nnot a block\n```\n````\n\n"
        '- a list:\n\n  ```bash\n  curl -s x   # 422, "field": "b"\n'
        '  # HTTP/1.1 204 No Content\n  # vary: Origin\n  # {"id":"...","ok":true}\n  ```\n'
        '```json\n{"status": 422}\n```\n'
    )
    first, second = blocks(page)
    assert (first.reason, first.code) == ("serves until Ctrl-C", "make run")
    assert second.reason is None
    assert second.code.startswith("curl -s x")
    assert second.statuses == ["422", "204"]
    assert second.headers == ["vary: origin"]
    assert header_line("Allow: POST, GET") == header_line("allow: GET, POST") == "allow: get, post"
    assert second.expected == ['"field":"b"', '"ok":true', '"status":422']


# --- running them ------------------------------------------------------------------


@dataclass
class Server:
    port: int
    model_server: str
    environment: dict[str, str]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """`make run` as the pages describe it, and the fake model server its chat calls reach."""
    home = tmp_path_factory.mktemp("docs-server")
    port = free_port()
    log_path = home / "run.log"
    with serving() as model:
        model_server = model.url.removeprefix("http://").rstrip("/").removesuffix("/v1")
        environment = process_environment(
            HOST="127.0.0.1",
            PORT=str(port),
            INSTANCE_PATH=str(home / "instance"),
            LLM_BASE_URL=f"http://{model_server}",
            **SETTINGS,
        )
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "backoffice.run"],
                cwd=ROOT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            eventually(
                lambda: (
                    process.poll() is not None
                    or (healthy(port) and " ready." in log_path.read_text())
                ),
                timeout=TIMEOUT,
            )
            assert process.poll() is None, log_path.read_text()
            yield Server(port, model_server, environment)
        finally:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def workspace(directory: Path) -> Path:
    """Where a page's examples run: as in a checkout (`.venv`, `.flaskenv`, `bench`), with
    the `.env` that `make run` read."""
    directory.mkdir()
    for name in (".venv", "bench"):
        (directory / name).symlink_to(ROOT / name)
    shutil.copy(ROOT / ".flaskenv", directory / ".flaskenv")
    (directory / ".env").write_text(f"METRICS_TOKEN={SETTINGS['METRICS_TOKEN']}\n")
    return directory


def script(runnable: list[Block], server: Server) -> str:
    parts = ["set -euo pipefail"]
    for number, block in enumerate(runnable):
        code = block.code.replace(DOCS_SERVER, f"127.0.0.1:{server.port}")
        code = code.replace(DOCS_MODEL_SERVER, server.model_server)
        # On a line of its own, though the last command may not have ended its line
        parts += [f"printf '\\n@@block {number}@@\\n' | tee /dev/stderr", code]
    parts.append("printf '\\n@@end@@\\n'")
    return "\n".join(parts) + "\n"


def run_page(page: Path, server: Server, directory: Path) -> list[str]:
    """Run a page's examples; what went wrong, one entry a block."""
    runnable = [block for block in blocks(page) if block.reason is None]
    if not runnable:
        return []
    answer = subprocess.run(  # noqa: S603 (bash, running our own docs)
        ["bash", "-c", script(runnable, server)],  # noqa: S607
        cwd=workspace(directory),
        env=server.environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    outputs = re.split(r"^@@block \d+@@$|^@@end@@$", answer.stdout, flags=re.MULTILINE)[1:]
    errors = re.split(r"^@@block \d+@@$", answer.stderr, flags=re.MULTILINE)[1:]
    done = len(outputs) if answer.returncode == 0 else len(outputs) - 1
    problems = [
        problem
        for block, output in zip(runnable[:done], outputs, strict=False)
        for problem in unmet(block, output)
    ]
    if answer.returncode != 0:
        failed = runnable[max(done, 0)]
        problems.append(
            f"{failed.where}: exit {answer.returncode}\n--- code\n{failed.code}\n"
            f"--- stdout\n{outputs[-1][-3000:] if outputs else ''}\n"
            f"--- stderr\n{errors[-1][-3000:] if errors else answer.stderr[-3000:]}"
        )
    return problems


def unmet(block: Block, output: str) -> list[str]:
    printed = normal(output)
    lines = {header_line(line) for line in output.replace("\r", "").split("\n") if ": " in line}
    missing = [pair for pair in block.expected if pair not in printed]
    missing += [
        status
        for status in block.statuses
        if not re.search(
            rf'(?m)HTTP/[\d.]+ {status}\b|(?:^|[}}\]])\s*{status}\s*$|"status":{status}\b', printed
        )
    ]
    missing += [header for header in block.headers if header not in lines]
    if not missing:
        return []
    return [f"{block.where}: the output lacks {missing}\n--- output\n{output[-3000:]}"]


@pytest.mark.worker
def test_every_bash_example_runs_and_prints_what_it_shows(server, tmp_path):
    ran = [page for page in pages() if any(b.reason is None for b in blocks(page))]
    assert len(ran) >= 10
    problems = [
        problem
        for number, page in enumerate(ran)
        for problem in run_page(page, server, tmp_path / f"page-{number}")
    ]
    assert problems == [], "\n\n".join(problems)


@pytest.mark.worker
def test_a_failing_example_is_reported(server, tmp_path):
    """The runner itself can fail: a command that fails, and output that differs."""
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\nX=1\n```\n\n"
        '```bash\ncurl -s http://127.0.0.1:5000/health   # {"status":"sick"}\n```\n\n'
        "```bash\ncurl -sf http://127.0.0.1:5000/api/nothing-here\necho $X\n```\n"
    )
    shown, failed = run_page(page, server, tmp_path / "work")
    assert shown.startswith('page.md:5: the output lacks [\'"status":"sick"\']'), shown
    assert failed.startswith("page.md:9: exit 22"), failed
