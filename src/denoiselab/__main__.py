"""`python -m denoiselab`: the same as the `denoiselab` command."""

import sys

from .cli import main

sys.exit(main())
