"""Bundled demo samples: synthetic raw data made by pb-build in each source's original format."""
