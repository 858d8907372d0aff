"""Check the built documentation site the way a reader meets it; exit 1 on any problem.

``make docs`` runs it after Sphinx (``python docs/check_site.py docs/_build/html``). It fails on

* the text "issue N" (or "issues N", "issue #N") anywhere a reader sees it: the pages speak to
  users, not to the repository's tracker. HTML attributes are not read; code is;
* raw reStructuredText markup in prose: a ````literal```` that did not render (text outside
  ``<pre>`` and outside an example's rich output that still shows two backticks);
* a broken internal link: an ``href`` or ``src`` to a file the site does not have, or to an
  ``#anchor`` the target page does not define;
* a public name missing from the API reference's sidebar: every name of ``skood.__all__`` and of
  each public module's ``__all__`` must have a page there (a name re-exported under another
  module counts when that page documents the same object).

The functions below each take HTML text or a site folder, so ``tests/test_docs_site.py`` runs them
on small fixtures.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import posixpath
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: "issue 22", "Issue #31", "issues 16": a tracker reference in text written for users.
ISSUE_PATTERN = re.compile(r"\bissues?\s*#?\s*\d+", re.IGNORECASE)

#: The page whose sidebar must list every public name.
API_PAGE = "api.html"

#: Modules whose ``__all__`` is documented elsewhere than in the API reference, and where.
DOCUMENTED_ELSEWHERE = {
    "skood.cli": "the command line, documented option by option on cli.html (sphinx-argparse)",
}

# Elements whose text a reader never sees as prose.
_HIDDEN = {"script", "style", "template"}
# Link schemes that leave the site: not checked (the build is offline).
_EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")


class _Page(HTMLParser):
    """One pass over a page: its visible text, its links, its anchors and its sidebar's links."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []  # every visible text node
        self.prose: list[str] = []  # the visible text outside <pre>
        self.links: list[str] = []  # href of <a>, src of <img>
        self.backlinks: list[str] = []  # viewcode's "[docs]" links from a source listing
        self.ids: set[str] = set()
        self.sidebar_links: list[str] = []
        self._hidden = 0
        self._pre = 0
        self._output = 0  # >0 inside an executed example's rich output (a library's HTML repr)
        self._nav_depth = 0  # >0 inside the primary sidebar's <nav class="bd-docs-nav">

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        for key in ("id", "name"):
            if attributes.get(key) and (key == "id" or tag == "a"):
                self.ids.add(attributes[key])
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag == "pre":
            self._pre += 1
        if tag == "div":
            if self._output:
                self._output += 1
            elif "rendered_html" in attributes.get("class", "").split():
                self._output = 1
        if tag == "nav":
            if self._nav_depth:
                self._nav_depth += 1
            elif "bd-docs-nav" in attributes.get("class", "").split():
                self._nav_depth = 1
        if tag == "a" and "viewcode-back" in attributes.get("class", "").split():
            self.backlinks.append(attributes["href"])
        elif tag == "a" and "href" in attributes:
            self.links.append(attributes["href"])
            if self._nav_depth:
                self.sidebar_links.append(attributes["href"])
        elif tag == "img" and "src" in attributes:
            self.links.append(attributes["src"])

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN and self._hidden:
            self._hidden -= 1
        elif tag == "pre" and self._pre:
            self._pre -= 1
        elif tag == "nav" and self._nav_depth:
            self._nav_depth -= 1
        elif tag == "div" and self._output:
            self._output -= 1

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        self.text.append(data)
        if not self._pre and not self._output:
            self.prose.append(data)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def text_problems(html: str) -> list[str]:
    """Issue numbers in the visible text, and ````literals```` that did not render in prose."""
    page = parse(html)
    text = " ".join(" ".join(page.text).split())
    problems = [f'says "{match.group(0)}"' for match in ISSUE_PATTERN.finditer(text)]
    for node in page.prose:
        if "``" in node:
            snippet = " ".join(node.split())[:80]
            problems.append(f"shows raw markup: {snippet!r}")
    return problems


def _pages(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*.html") if "_sources" not in path.parts)


def _target(root: Path, page: Path, href: str) -> tuple[Path, str] | None:
    """The file and fragment an internal link points to; None for an external one."""
    if _EXTERNAL.match(href):
        return None
    parts = urlsplit(href)
    if not parts.path:
        return page, unquote(parts.fragment)
    folder = page.parent.relative_to(root).as_posix()
    relative = posixpath.normpath(posixpath.join(folder, unquote(parts.path)))
    target = root / relative
    if parts.path.endswith("/") or target.is_dir():
        target = target / "index.html"
    return target, unquote(parts.fragment)


def link_problems(root: Path) -> list[str]:
    """Every internal link of every page whose file or ``#anchor`` does not exist."""
    root = Path(root)
    parsed: dict[Path, _Page] = {}

    def page_of(path: Path) -> _Page:
        if path not in parsed:
            parsed[path] = parse(path.read_text(encoding="utf-8", errors="replace"))
        return parsed[path]

    problems = []
    for path in _pages(root):
        page = page_of(path)
        # viewcode's "[docs]" backlinks are checked for their page only: Sphinx names their anchor
        # after the first module that documented a name of the source file (``#skood.X`` for
        # ``skood.base.X`` once ``skood.TrainingDiverged`` is documented), a bug of its own.
        links = [(href, True) for href in page.links] + [(href, False) for href in page.backlinks]
        for href, check_anchor in sorted(set(links)):
            target = _target(root, path, href)
            if target is None:
                continue
            file, fragment = target
            name = path.relative_to(root).as_posix()
            if not file.is_file():
                problems.append(f"{name}: link to a missing file: {href}")
            elif (
                check_anchor
                and fragment
                and file.suffix == ".html"
                and fragment not in page_of(file).ids
            ):
                problems.append(f"{name}: link to a missing anchor: {href}")
    return problems


def public_names() -> dict[str, object]:
    """Every public name of skood, fully qualified: ``skood.__all__`` and each public module's.

    A public module is one whose dotted path has no component starting with ``_``; the modules of
    :data:`DOCUMENTED_ELSEWHERE` (and their submodules) are left to their own page.
    """
    import skood

    modules = [skood] + [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(skood.__path__, "skood.")
        if not any(part.startswith("_") for part in info.name.split("."))
        and not any(info.name == m or info.name.startswith(m + ".") for m in DOCUMENTED_ELSEWHERE)
    ]
    names = {}
    for module in modules:
        for name in getattr(module, "__all__", ()):
            if not name.startswith("__"):
                names[f"{module.__name__}.{name}"] = getattr(module, name)
    return names


def _resolve(qualname: str) -> object:
    module, _, name = qualname.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def documented_names(sidebar_links: list[str]) -> set[str]:
    """The qualified names of the API pages (``generated/<name>.html``) the sidebar links to."""
    names = set()
    for href in sidebar_links:
        match = re.search(r"(?:^|/)generated/([\w.]+)\.html$", urlsplit(href).path)
        if match:
            names.add(match.group(1))
    return names


def missing_api_names(documented: set[str], public: dict[str, object]) -> list[str]:
    """Public names with no page in the sidebar, neither their own nor a re-export's.

    ``skood.knn.KNNDetector`` is covered by ``skood.KNNDetector``'s page: the same name, the same
    object.
    """
    by_short: dict[str, list[str]] = {}
    for qualname in documented:
        by_short.setdefault(qualname.rpartition(".")[2], []).append(qualname)
    missing = []
    for qualname, obj in sorted(public.items()):
        if qualname in documented:
            continue
        short = qualname.rpartition(".")[2]
        if not any(_resolve(other) is obj for other in by_short.get(short, ())):
            missing.append(qualname)
    return missing


def check_site(root: Path) -> list[str]:
    """Every problem of the built site at ``root``, one line each (empty: the site passes)."""
    root = Path(root)
    if not (root / API_PAGE).is_file():
        return [f"{root / API_PAGE} not found: build the site first (make docs)"]
    problems = []
    for path in _pages(root):
        name = path.relative_to(root).as_posix()
        html = path.read_text(encoding="utf-8", errors="replace")
        problems += [f"{name}: {problem}" for problem in text_problems(html)]
    problems += link_problems(root)
    sidebar = parse((root / API_PAGE).read_text(encoding="utf-8")).sidebar_links
    if not sidebar:
        problems.append(f"{API_PAGE}: no sidebar navigation found")
    problems += [
        f"{API_PAGE}: {name} is public but has no page in the sidebar"
        for name in missing_api_names(documented_names(sidebar), public_names())
    ]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="docs/_build/html", help="the built site")
    args = parser.parse_args(argv)
    problems = check_site(Path(args.root))
    for problem in problems:
        print(problem)
    print(f"check_site: {len(problems)} problem(s) in {args.root}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
