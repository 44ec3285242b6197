"""Exception hierarchy of arcstream, and the error codes it puts on the wire.

Lower-layer errors (psycopg, aiokafka, httpx, arctrl) are mapped to these at
the boundary with ``raise ... from exc`` so callers handle one vocabulary::

    ArcstreamError                 base; ``retriable`` says whether trying again may help
    ├── FatalError                 the process cannot run; the CLI prints one line and exits 1
    │   ├── ConfigError            a setting is missing or invalid
    │   ├── SourceUnavailableError the database cannot be reached
    │   ├── SourceContractError    a required relation or column is missing
    │   ├── BrokerUnavailableError the Kafka broker cannot be reached
    │   └── StackError             the single-machine stack cannot start or is not running
    └── RecordError                one message or row failed; becomes a report/DLQ record (``code``)
        ├── PayloadError           malformed JSON, schema-invalid payload, bad key or marker
        ├── MappingError           the payload cannot be mapped to an ARC
        ├── BuildTimeoutError      a build ran past ``arc_generation_timeout_minutes``
        └── DeliveryError          the upload target refused or failed (``retriable`` per status)

Report records and DLQ headers carry an *error code* from :data:`ERROR_CODES`,
never a Python class name: renaming a class must not change the data contract,
and a consumer of ``arc.report`` needs a closed, documented set to act on.
"""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

#: The error codes on the wire (``error_code`` of an outcome, ``arcstream.error.code`` of a DLQ record).
ErrorCode = Literal[
    "malformed-json",
    "schema-violation",
    "missing-key",
    "key-mismatch",
    "unreadable-marker",
    "mapping-failed",
    "build-timeout",
    "worker-died",
    "arc-too-large",
    "assembly-failed",
    "publish-failed",
    "unreadable-change",
    "unmapped-table",
    "unmapped-change",
    "target-rejected",
    "target-failed",
    "internal-error",
]

#: What each code means, for docs/operations.md and ``arcstream`` users (a test keeps both in step).
ERROR_CODES: dict[ErrorCode, str] = {
    "malformed-json": "the message value is not JSON",
    "schema-violation": "the message is JSON but violates its schema (payload, ARC or run marker)",
    "missing-key": "the message has no key (the key is the investigation identifier)",
    "key-mismatch": "the message key differs from the identifier inside the payload or ARC",
    "unreadable-marker": "a run marker (run-start / run-end) that cannot be read",
    "mapping-failed": "the payload cannot be turned into an ARC (arctrl refused it; the message says why)",
    "build-timeout": "the build ran past arc_generation_timeout_minutes; its worker was killed",
    "worker-died": "the build worker process died during the build",
    "arc-too-large": "the ARC exceeds the producer's or topic's message size limit",
    "assembly-failed": "the investigation's source rows cannot be assembled into a payload",
    "publish-failed": "the broker did not accept the payload",
    "unreadable-change": "a change record (Debezium event) that cannot be parsed",
    "unmapped-table": "a change of a captured table that cdc.table_mappings does not map",
    "unmapped-change": "a change whose row names no investigation",
    "target-rejected": "the ARC store refused this ARC (HTTP 4xx such as 409, 413, 422; see http_status)",
    "target-failed": (
        "the ARC store kept failing for this ARC (5xx after max_attempts, or unavailable past outage_budget_s)"
    ),
    "internal-error": "an unexpected error in arcstream itself (a bug: the message says where)",
}

assert set(ERROR_CODES) == set(get_args(ErrorCode)), "every error code needs its meaning"


class ArcstreamError(Exception):
    """Base class; ``retriable`` tells whether the same operation may succeed later."""

    retriable: bool = False
    #: The wire code of a failure of this class (instances may narrow it).
    code: ErrorCode = "internal-error"


class FatalError(ArcstreamError):
    """The process cannot do its job; exit non-zero with this one-line message."""


class ConfigError(FatalError):
    """A setting is missing or invalid."""


class SourceUnavailableError(FatalError):
    """The source database cannot be reached."""

    retriable = True


class SourceContractError(FatalError):
    """The source database lacks a relation or column of the source contract."""


class BrokerUnavailableError(FatalError):
    """The Kafka broker cannot be reached."""

    retriable = True


class StackError(FatalError):
    """The single-machine stack cannot be started, or is not running."""


class RecordError(ArcstreamError):
    """One record failed; the service reports it and carries on."""

    default_code: ClassVar[ErrorCode] = "internal-error"

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code


class PayloadError(RecordError):
    """A message is not valid JSON, violates its schema, or its key does not fit it."""

    default_code = "schema-violation"


class MappingError(RecordError):
    """A payload cannot be turned into an ARC."""

    default_code = "mapping-failed"


class BuildTimeoutError(RecordError):
    """A build ran past its timeout and was killed with its worker."""

    default_code = "build-timeout"


class DeliveryError(RecordError):
    """The upload target did not accept an ARC."""

    default_code = "target-rejected"

    def __init__(
        self, message: str, *, status: int | None = None, retriable: bool = False, code: ErrorCode | None = None
    ) -> None:
        super().__init__(message, code=code or ("target-failed" if status is None or status >= 500 else None))
        self.status = status
        self.retriable = retriable
