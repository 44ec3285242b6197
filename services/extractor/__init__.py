"""The extractor: source database -> ``arc.investigations`` (snapshot and CDC)."""
