"""The uploader: ``arc.arcs`` -> ARC store (FAIRagro v3 API), one outcome per ARC on ``arc.report``.

Also home of the run report (``arcstream report``) and the live status view
(``arcstream status``), both read from the report topic.
"""
