"""Exception hierarchy of arcstream.

Lower-layer errors (psycopg, aiokafka, httpx, arctrl) are mapped to these at
the boundary with ``raise ... from exc`` so callers handle one vocabulary::

    ArcstreamError                 base; ``retriable`` says whether trying again may help
    ├── FatalError                 the process cannot run; the CLI prints one line and exits 1
    │   ├── ConfigError            a setting is missing or invalid
    │   ├── SourceUnavailableError the database cannot be reached
    │   ├── SourceContractError    a required relation or column is missing
    │   ├── BrokerUnavailableError the Kafka broker cannot be reached
    │   └── StackError             the single-machine stack cannot start or is not running
    └── RecordError                one message or row failed; becomes a report/DLQ record
        ├── PayloadError           malformed JSON or schema-invalid payload (not retriable)
        ├── MappingError           the payload cannot be mapped to an ARC (not retriable)
        ├── BuildTimeoutError      a build ran past ``arc_generation_timeout_minutes``
        └── DeliveryError          the upload target refused or failed (``retriable`` per status)
"""

from __future__ import annotations


class ArcstreamError(Exception):
    """Base class; ``retriable`` tells whether the same operation may succeed later."""

    retriable: bool = False

    @property
    def error_class(self) -> str:
        """Short class name used in report records and DLQ headers."""
        return type(self).__name__


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


class PayloadError(RecordError):
    """A message is not valid JSON or violates the payload schema."""


class MappingError(RecordError):
    """A payload cannot be turned into an ARC."""


class BuildTimeoutError(RecordError):
    """A build ran past its timeout and was killed with its worker."""


class DeliveryError(RecordError):
    """The upload target did not accept an ARC."""

    def __init__(self, message: str, *, status: int | None = None, retriable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retriable = retriable
