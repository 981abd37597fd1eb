#!/usr/bin/env python3
"""captum_cams: class-activation-map attribution methods and metrics for Captum."""
__version__ = "0.1.0"
