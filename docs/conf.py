"""Sphinx configuration of skood's documentation site (``make docs``; offline, warnings are errors)."""

import os
import sys
from pathlib import Path

# The build must never reach the network: no intersphinx inventories are fetched, and the
# examples run on bundled or generated data. One torch thread per example keeps the gallery's
# time stable on a 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sphinx_gallery.sorting import FunctionSortKey  # noqa: E402

import skood  # noqa: E402

project = "skood"
author = "the skood developers"
copyright = "2026, the skood developers"
release = version = skood.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "sphinxarg.ext",
    "myst_parser",
    "sphinx_copybutton",
    "sphinx-mathjax-offline",  # MathJax served from the site itself: equations render offline
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "README.md", "screenshots"]
templates_path = ["_templates"]
html_static_path = ["_static"]
html_css_files = ["skood.css"]
# The page contents list an API page's methods by their own names (fit()), not
# ConformalDetector.fit(): the full names ran out of the right-hand column.
toc_object_entries_show_parents = "hide"

# The pages are checked with -W: a reference that does not resolve is an error.
nitpicky = False
autosummary_generate = True
autodoc_default_options = {"members": True}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]


#: The gallery's reading order: the contract's pictures first, then the tools, then the papers.
_GALLERY_ORDER = [
    "plot_score_distributions.py",
    "plot_roc_curves.py",
    "plot_ensemble.py",
    "plot_knn_deep_features.py",
    "plot_grid_search_heatmap.py",
    "plot_flow_on_classifier_features.py",
    "plot_quantile_vs_mean.py",
    "plot_open_set_confusion.py",
    "plot_few_oe_hsc_vs_bce.py",
    "plot_ice_vs_oe.py",
    "plot_ama_dimmed_digits.py",
    "plot_rose_blurred_digits.py",
    "plot_clip_precomputed.py",
    "plot_contaminated_calibration.py",
    "plot_covariate_shift.py",
    "plot_adadetect.py",
]

# An example not listed yet (a new one) comes after the listed ones, by name, rather than
# stopping the build; list.index (not a function defined here) keeps the setting picklable.
_GALLERY_ORDER += sorted(
    path.name
    for folder in ("examples", "tutorials")
    for path in (ROOT / folder).glob("plot_*.py")
    if path.name not in _GALLERY_ORDER
)

sphinx_gallery_conf = {
    # The gallery, and the getting-started page: a one-example gallery, so that its code runs in
    # the build and the page shows what it printed.
    "examples_dirs": [str(ROOT / "examples"), str(ROOT / "tutorials")],
    "gallery_dirs": ["auto_examples", "getting_started"],
    "filename_pattern": r"/plot_",
    "within_subsection_order": FunctionSortKey(_GALLERY_ORDER.index, "skood's reading order"),
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "reference_url": {"skood": None},
    "doc_module": ("skood",),
    "backreferences_dir": "generated/backreferences",
    "show_memory": False,
    "min_reported_time": 5,
}

html_theme = "pydata_sphinx_theme"
html_title = f"skood {release}"
html_theme_options = {
    # The search as an icon, so that the header's links fit on one line at 1300 px.
    "navbar_persistent": [],
    "navbar_end": ["search-button", "navbar-icon-links"],
    "navbar_align": "left",
    # Install, getting started, user guide, gallery, API, benchmarks and evidence in the header;
    # the command line, the walkthrough and the project pages under "More".
    "header_links_before_dropdown": 7,
    "icon_links": [
        {
            "name": "Licence: BSD-3-Clause",
            "url": "https://spdx.org/licenses/BSD-3-Clause.html",
            "icon": "fa-solid fa-scale-balanced",
            "type": "fontawesome",
        },
    ],
    "show_toc_level": 2,
    # The gallery's code is up to 100 columns wide: its pages give the page-contents column to it.
    # The page's contents on the right of every page but the gallery's (whose code lines need
    # the width): a dict of patterns would leave every page it does not match without it.
    "secondary_sidebar_items": ["page-toc"],
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "cli": [], "benchmarks": [], "getting_started/*": []}
html_show_sourcelink = False


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Document the members skood defines; leave inherited ones to their own libraries' docs.

    skood's estimators inherit sklearn's ``get_params`` / ``set_params`` / metadata routing, the
    ``skood.nn`` modules dozens of ``torch.nn.Module`` methods, the worker plugins Dask's hooks:
    each is documented where it is defined, with cross-references into that library's site.
    """
    module = getattr(obj, "__module__", None)
    if isinstance(module, str) and not module.startswith("skood"):
        return True
    return skip


def _no_page_contents_in_gallery(app, pagename, templatename, context, doctree):
    if pagename.startswith("auto_examples/"):
        context["secondary_sidebar_items"] = []


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)
    # After the theme's own handler (priority 500), which fills the list from the options.
    app.connect("html-page-context", _no_page_contents_in_gallery, priority=900)
