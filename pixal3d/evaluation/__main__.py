"""``python -m pixal3d.evaluation ARGS`` is ``pixal3d evaluate ARGS``."""

import sys

from pixal3d.cli import main

raise SystemExit(main(["evaluate", *sys.argv[1:]]))
