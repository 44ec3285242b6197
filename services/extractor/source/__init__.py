"""The source database: contract (six relations), payload assembly, batched loading, demo data."""
