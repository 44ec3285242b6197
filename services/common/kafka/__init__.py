"""Kafka plumbing: client factories, topic management, offset tracking."""
