#!/usr/bin/env python3
"""Sphinx configuration of the captum_cams API reference (built like Captum's ``sphinx/``).

Build: ``python -m sphinx -W -b html sphinx sphinx/_build`` (warnings are errors);
``tests/test_docs.py`` builds it in the test suite.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

project = "captum_cams"
author = "captum_cams contributors"
copyright = "captum_cams contributors, BSD-3-Clause"
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]

# Google-style sections (Args:, Returns:, Raises:, Attributes:), as in Captum.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = True
napoleon_use_ivar = True
napoleon_use_param = False  # types as text: no ambiguous cross-references

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the docstrings give the types, as Captum's do
autoclass_content = "class"
nitpicky = False

templates_path: list = []
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list = []
