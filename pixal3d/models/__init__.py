"""Networks of the cascade (flows, VAEs) and their building blocks, plus checkpoint loading."""
