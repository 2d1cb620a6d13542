"""Upstream entry point: ``python inference.py --image IMG --output out.glb [options]``.

Same options as ``pixal3d generate``; see ``python inference.py --help``.
"""

from pixal3d.cli.generate import main

if __name__ == "__main__":
    raise SystemExit(main())
