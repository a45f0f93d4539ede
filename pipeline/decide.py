"""``python -m pipeline.decide``: the decision's command line (the code: :mod:`pipeline.decision.cli`)."""

import sys

from pipeline.decision.cli import main

if __name__ == "__main__":
    sys.exit(main())
