"""Release recipes, the typed manifest (manifest.json), provenance (SHA256SUMS, fingerprints) and rebuilds."""
