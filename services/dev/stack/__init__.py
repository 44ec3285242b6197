"""The single-machine stack: real PostgreSQL and a real Kafka-protocol broker from PyPI packages."""
