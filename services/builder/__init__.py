"""The builder service: investigation payloads -> ARC RO-Crate JSON-LD in worker processes (docs/builder.md)."""
