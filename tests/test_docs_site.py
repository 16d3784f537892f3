"""The docs site builds with warnings as errors (a broken link or anchor, a page left out
of the nav), works offline, and the README stays a newcomer's page that links into it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, process_environment

#: A README longer than this is a manual again: move the text into docs/.
README_LINES = 300
#: A Markdown link's target: [text](target).
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
#: What a page may load from elsewhere: nothing (no web font, no CDN).
REMOTE_ASSET = re.compile(r"""<(?:link|script|img)\b[^>]*\b(?:href|src)=["']?(?:https?:)?//""")


def test_the_site_builds_strict_and_loads_nothing_from_elsewhere(tmp_path):
    site = tmp_path / "site"
    answer = subprocess.run(  # noqa: S603 (our own tool)
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=process_environment(NO_MKDOCS_2_WARNING="1"),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "WARNING" not in answer.stderr
    built = {path.relative_to(site).as_posix() for path in site.rglob("index.html")}
    assert {"index.html", "api/items/index.html", "benchmarks/index.html"} <= built
    remote = [
        f"{page.relative_to(site)}: {match.group(0)}"
        for page in site.rglob("*.html")
        for match in REMOTE_ASSET.finditer(page.read_text())
    ]
    assert remote == []
    assert (site / "search" / "search_index.json").exists()  # the search index is local


def test_every_page_is_in_the_nav():
    """mkdocs only warns about a page outside the nav; named here so the failure is plain."""
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(
        path.relative_to(ROOT / "docs").as_posix() for path in (ROOT / "docs").rglob("*.md")
    )
    assert [page for page in pages if f" {page}\n" not in nav] == []


def test_the_readme_is_short_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < README_LINES
    targets = [match["target"] for match in LINK.finditer(readme)]
    local = [target for target in targets if not re.match(r"[a-z]+:", target)]
    assert len(local) >= 10  # it links into the docs
    missing = [target for target in local if not (ROOT / Path(target.partition("#")[0])).exists()]
    assert missing == []
    assert "make docs" in readme
