"""Sphinx configuration of the anyml documentation (``nox -s docs`` builds it with warnings as errors)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "anyml"
author = "the anyml authors"
copyright = "the anyml authors"  # noqa: A001
extensions = ["sphinx.ext.autodoc", "sphinx.ext.mathjax", "numpydoc"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the signatures and the numpydoc "Parameters" say it
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()
suppress_warnings = ["ref.python"]  # one name re-exported at two places (anyml.Sequential)
nitpicky = False
