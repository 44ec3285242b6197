"""Operator tools: replay a consumer group's offsets, republish dead-lettered records."""
