"""Every relative link in the README and the Markdown under docs/, measured/ and bench/ reaches a file of
the repository, and every #anchor a heading of the page it names (GitHub's heading slugs)."""
import re
from pathlib import Path

import pytest
from conftest import REPO_ROOT

ROOT = Path(REPO_ROOT)
PAGES = sorted([ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("measured/**/*.md"),
                *ROOT.glob("bench/**/*.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")


def heading_slug(title):
    """GitHub's anchor of a heading: lower case, punctuation dropped (hyphens kept), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def anchors(page):
    """The anchors of a page's headings outside fenced code, the n-th repeat suffixed -n as GitHub does."""
    found, seen, fenced = set(), {}, False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"#{1,6} (.*)", line)
        if heading:
            slug = heading_slug(heading.group(1))
            found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return found


def test_slugs_follow_githubs_rule():
    assert heading_slug("Baseline checks before the long runs") == "baseline-checks-before-the-long-runs"
    assert heading_slug("2. Searching for the paper's row") == "2-searching-for-the-papers-row"
    assert heading_slug("ResNet20 / CIFAR-10 (≤ 110 epochs)") == "resnet20--cifar-10--110-epochs"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_relative_links_reach_a_file_and_a_heading(page):
    assert PAGES, "no Markdown pages found"
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):   # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        destination = (page.parent / path) if path else page
        if not destination.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {', '.join(broken)}"
