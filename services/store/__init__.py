"""The local ARC store: a small HTTP server with the FAIRagro v3 API subset the uploader uses.

It is the upload target of the single-machine stack and of the tests, so it keeps
the reference semantics that matter to a client (ARC id, idempotent re-upload,
in-harvest conflicts, RO-Crate root validation) and adds what the real API lacks
for testing: ARC deletion, fault injection and a request log.
"""
