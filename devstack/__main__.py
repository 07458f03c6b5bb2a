"""``python -m devstack``: ``make run`` (see ``devstack.launcher``)."""

import sys

from devstack.launcher import main

sys.exit(main())
