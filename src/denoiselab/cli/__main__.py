"""`python -m denoiselab.cli`: the same as the `denoiselab` command."""

import sys

from . import main

sys.exit(main())
