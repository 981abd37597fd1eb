#!/usr/bin/env python3
r"""
The research kit beside the Captum-style core: the ``captum-cams`` command line, the
benchmark behind it, its input plumbing (model loading, layer resolution, image files, VOC
masks), the synthetic and real datasets and the project's own models.

The core (:mod:`captum_cams.attr`, :mod:`captum_cams.metrics`, :mod:`captum_cams.tuning`,
:mod:`captum_cams.calm`, :mod:`captum_cams.visualization`) never imports the kit; the kit
uses the core like any user does (``setup.cfg``'s import-linter contracts check both).
"""
