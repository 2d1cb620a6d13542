"""Training: configs, the shared loop (:mod:`.trainer`), flow-matching and VAE trainers.

``train.py`` and ``pixal3d train`` (command line and process launch) are :mod:`pixal3d.cli.train`.
"""
