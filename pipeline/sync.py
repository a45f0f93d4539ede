"""``python -m pipeline.sync``: log the local run records MLflow does not have yet (the code: :mod:`pipeline.tracking.sync`)."""

import sys

from pipeline.tracking.sync import main

if __name__ == "__main__":
    sys.exit(main())
