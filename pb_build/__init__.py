"""pb-build: rebuild ProactiveBench from its raw sources."""

__version__ = "0.1.0"
