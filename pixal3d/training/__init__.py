"""Training: configs, the shared loop (:mod:`.trainer`), flow-matching and VAE trainers, and ``train.py``'s runner."""
