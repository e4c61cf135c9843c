"""The project's documents: a short front door, and every citation in the repository resolves.

Code, tests and benchmarks cite ``docs/theory.md §x``, ``docs/architecture.md``, ``docs/benchmarks.md``
and ``docs/metrics.md``; these tests fail when a cited document or section does not exist, when a
relative link in the README or docs/ points nowhere, or when a citation of a document outside the
repository (a working note, an issue number) comes back.
"""

from __future__ import annotations

import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_MAX_LINES = 250
# Written on branches merged beside this one: cited before they land, and checked like any other
# document once they exist.
TEXT_SUFFIXES = (".py", ".md", ".toml", ".yaml", ".yml", ".cfg", ".txt", ".sh", ".json")


def repository_files() -> list[str]:
    """Tracked and untracked-but-not-ignored text files, relative to the root."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk it
        out = []
        for top, dirs, files in os.walk(ROOT):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in {"data", "runs", "lightning_logs", "build"}]
            out += [os.path.relpath(os.path.join(top, f), ROOT) for f in files]
    return sorted(p for p in out if (p.endswith(TEXT_SUFFIXES) or p == "Makefile") and os.path.isfile(os.path.join(ROOT, p)))


def read(path: str) -> str:
    return open(os.path.join(ROOT, path), encoding="utf-8", errors="replace").read()


def test_readme_is_a_short_front_door():
    text = read("README.md")
    lines = text.split("\n")
    assert len(text.splitlines()) <= README_MAX_LINES, f"README.md has {len(text.splitlines())} lines; the limit is {README_MAX_LINES}"
    assert lines[0] == "# lightning_w2s"
    block = text[text.index("```bash") + len("```bash") :]
    commands = [ln.split("#")[0].strip() for ln in block[: block.index("```")].strip().split("\n")]
    assert commands == ["make demo", "make test"]


def test_every_cited_document_exists():
    cited: dict[str, str] = {}
    for path in repository_files():
        for doc in re.findall(r"docs/[a-z_]+\.md", read(path)):
            cited.setdefault(doc, path)
    assert {"docs/theory.md", "docs/architecture.md", "docs/benchmarks.md", "docs/metrics.md"} <= set(cited)
    missing = {doc: where for doc, where in cited.items() if not os.path.isfile(os.path.join(ROOT, doc))}
    assert missing == {}, f"cited but not in the repository (document: first file citing it): {missing}"


def theory_sections() -> set[str]:
    return {m for line in read("docs/theory.md").split("\n") if line.startswith("#") for m in re.findall(r"§([0-9.]*[0-9])", line)}


def test_every_cited_theory_section_exists():
    sections = theory_sections()
    assert {"1", "2", "2.1", "2.2", "2.3", "2.4", "2.5", "3", "4"} <= sections
    dangling = []
    for path in repository_files():
        for group in re.findall(r"theory\.md((?:[,;]? ?§[0-9.]*[0-9])+)", read(path)):
            dangling += [(path, s) for s in re.findall(r"§([0-9.]*[0-9])", group) if s not in sections]
    assert dangling == [], f"sections cited but not headings of docs/theory.md: {dangling}"


def test_relative_links_in_readme_and_docs_resolve():
    broken = []
    for path in ["README.md", "CHANGELOG.md"] + [p for p in repository_files() if p.startswith("docs/") and p.endswith(".md")]:
        for target in re.findall(r"\]\(([^)\s]+)\)", read(path)):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), target.split("#")[0]))
            if not os.path.exists(os.path.join(ROOT, resolved)):
                broken.append((path, target))
    assert broken == []


def test_no_citation_of_documents_outside_the_repository():
    pattern = re.compile("DES" + "IGN|[Ii]ssues? [0-9]+")
    hits = [(p, m.group(0)) for p in repository_files() for m in pattern.finditer(read(p))]
    assert hits == []
