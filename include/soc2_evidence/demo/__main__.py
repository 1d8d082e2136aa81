"""``python -m soc2_evidence.demo``: what ``make demo`` runs."""

import sys

from soc2_evidence.demo.run import main

sys.exit(main())
