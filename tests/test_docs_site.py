"""docs/check_site.py, the check ``make docs`` runs over the built site, on small sites it must fail."""

import importlib.util
from pathlib import Path

import pytest

import skood

_SPEC = importlib.util.spec_from_file_location(
    "check_site", Path(__file__).resolve().parent.parent / "docs" / "check_site.py"
)
check_site = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(check_site)


def _sidebar(*names: str, prefix: str = "generated/") -> str:
    items = "".join(f'<li><a href="{prefix}{name}.html">{name}</a></li>' for name in names)
    return f'<nav class="bd-docs-nav bd-links"><ul>{items}</ul></nav>'


def _write(root: Path, pages: dict[str, str]) -> Path:
    for name, body in pages.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"<html><body>{body}</body></html>", encoding="utf-8")
    return root


@pytest.mark.parametrize(
    "text", ["Since issue 22, the flow", "(Issue #31)", "issues 16 and 18", "see issue  7"]
)
def test_an_issue_number_in_the_text_is_a_problem(text):
    assert any("says" in problem for problem in check_site.text_problems(f"<p>{text}</p>"))


@pytest.mark.parametrize(
    "html",
    [
        '<p title="issue 22">A tooltip is an attribute, not text.</p>',
        "<script>var issue = 22; // issue 22</script>",
        "<p>The issue: 22 rows of 1,000 are flagged.</p>",
        "<p>An issue with tissue 3.</p>",
    ],
)
def test_attributes_scripts_and_other_words_are_not(html):
    assert check_site.text_problems(html) == []


def test_raw_double_backticks_in_prose_are_a_problem_but_not_in_code():
    assert check_site.text_problems("<p>pip installs ``skood bench``</p>")
    assert check_site.text_problems("<pre>x = 1  # ``x`` in a docstring</pre>") == []
    output = '<div class="output_subarea rendered_html"><div><p>``cv`` (a repr)</p></div></div>'
    assert check_site.text_problems(output) == []
    assert check_site.text_problems(output + "<p>then ``raw``</p>")


def test_broken_files_and_anchors_are_found_and_good_links_pass(tmp_path):
    root = _write(
        tmp_path,
        {
            "index.html": (
                '<a href="guide/page.html#usage">ok</a> <a href="guide/">folder</a>'
                ' <a href="https://example.org/missing.html">external</a> <a href="#">top</a>'
                ' <a href="mailto:x@example.org">mail</a> <img src="_images/missing.png">'
                ' <a href="guide/page.html#nowhere">bad anchor</a> <a href="gone.html">gone</a>'
            ),
            "guide/index.html": '<a href="../index.html">up</a>',
            "guide/page.html": '<h2 id="usage">Usage</h2><a href="#usage">self</a>',
        },
    )
    problems = check_site.link_problems(root)
    assert sorted(problems) == [
        "index.html: link to a missing anchor: guide/page.html#nowhere",
        "index.html: link to a missing file: _images/missing.png",
        "index.html: link to a missing file: gone.html",
    ]


def test_sidebar_names_are_read_from_the_primary_sidebar_only():
    page = check_site.parse(
        _sidebar("skood.KNNDetector", prefix="../generated/")
        + '<a href="../generated/skood.EnsembleDetector.html">in the text</a>'
    )
    assert check_site.documented_names(page.sidebar_links) == {"skood.KNNDetector"}


def test_a_public_name_without_a_page_is_missing_and_a_re_export_counts():
    public = check_site.public_names()
    assert public["skood.KNNDetector"] is skood.KNNDetector
    assert "skood.knn.KNNDetector" in public and "skood.nn.per_sample_grads" in public
    assert not any(name.startswith("skood.cli.") for name in public)  # documented on cli.html

    documented = {"skood.KNNDetector", "skood.conformal.benjamini_hochberg"}
    missing = check_site.missing_api_names(documented, public)
    assert "skood.knn.KNNDetector" not in missing  # the same object, documented as skood's
    assert "skood.conformal.benjamini_hochberg" not in missing
    assert "skood.EnsembleDetector" in missing and "skood.nn.per_sample_grads" in missing


def test_the_whole_check_fails_on_a_tiny_site_and_main_exits_non_zero(tmp_path, capsys):
    documented = sorted(check_site.public_names())
    left_out = "skood.conformal.benjamini_hochberg"
    root = _write(
        tmp_path,
        {
            "api.html": (
                _sidebar(*(name for name in documented if name != left_out))
                + "<p>Since issue 22 it is faster.</p>"
            ),
            **{f"generated/{name}.html": f"<h1>{name}</h1>" for name in documented},
        },
    )
    problems = check_site.check_site(root)
    assert problems == [
        'api.html: says "issue 22"',
        f"api.html: {left_out} is public but has no page in the sidebar",
    ]
    assert check_site.main([str(root)]) == 1
    assert "issue 22" in capsys.readouterr().out

    (root / "api.html").write_text(_sidebar(*documented), encoding="utf-8")
    assert check_site.check_site(root) == [] and check_site.main([str(root)]) == 0
