"""arcstream: streaming microservices that keep ARCs in sync with a research-metadata database.

Packages by concern: ``common`` (shared code), one package per service
(``extractor``, ``builder``, ``uploader``) and ``cli`` (the one ``arcstream`` command).
"""
