"""Release recipes and the code that records provenance (manifest.json, SHA256SUMS)."""
