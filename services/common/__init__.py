"""Code shared by every arcstream service: config, errors, Kafka plumbing, source contract, models."""
