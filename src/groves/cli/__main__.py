"""``python -m groves.cli``: the ``groves`` command."""

import sys

from groves.cli.main import main

sys.exit(main())
