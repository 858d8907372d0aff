"""``python -m skood.cli``: the ``skood`` command."""

import sys

from skood.cli import main

sys.exit(main())
