"""Training: Hydra configs to a Lightning run; objectives, freezing per stage, checkpoints and export."""
