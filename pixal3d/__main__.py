"""``python -m pixal3d`` runs the ``pixal3d`` command line."""

from pixal3d.cli import main

raise SystemExit(main())
