"""Development tooling: the single-machine stack, the demo-data generator, docs generators, the fidelity harness.

Not part of the runtime contract: its heavy dependencies (embedded PostgreSQL, the dev broker) come with
the ``stack`` extra and are imported only when a command needs them.
"""
