"""``python -m pipeline.decide``: the decision's command line (see :mod:`pipeline.decision`).

Kept as the documented entry point; everything lives in the :mod:`pipeline.decision` package.
"""

from __future__ import annotations

import sys

from .decision import *  # noqa: F401,F403  (the public API, for code that imported it from here)
from .decision import __all__  # noqa: F401
from .decision.cli import main
from .decision.mlflow_io import client as _client  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
