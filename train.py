"""Train a Pixal3D stage (upstream interface): ``python train.py --config CFG --output_dir DIR --data_dir DATA``.

See ``python train.py --help`` and the README's "Training" section.
"""

from __future__ import annotations

import sys

from pixal3d.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
