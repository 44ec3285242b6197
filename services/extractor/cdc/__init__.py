"""Change data capture: Debezium change events -> whole investigation payloads on ``arc.investigations``."""
