#!/usr/bin/env python3
"""``python -m captum_cams``: the same as the ``captum-cams`` command."""

import sys

from captum_cams.kit.cli import main

sys.exit(main())
