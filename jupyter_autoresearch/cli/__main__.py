"""``python -m jupyter_autoresearch.cli``: the same as the ``jupyter-autoresearch`` command."""

import sys

from . import main

sys.exit(main())
