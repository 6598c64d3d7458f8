"""Products over real rasters: sliding-window inference, `segment`, `change` (with its report) and `ask`."""
