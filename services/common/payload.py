"""The investigation payload: what travels on ``arc.investigations``.

One payload holds everything the six source relations say about one
investigation, grouped and lightly normalised (JSON columns parsed, duplicate
study/assay rows merged, annotation cells grouped into tables and columns) but
not interpreted: deciding what arctrl can take is the builder's job.

``schemas/investigation.schema.json`` is generated from these models
(``arcstream schemas write``) and a test checks both agree.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: Bumped when the payload shape changes incompatibly; carried in a message header too.
PAYLOAD_SCHEMA_VERSION: Literal[1] = 1

TargetType = Literal["investigation", "study", "assay"]
ColumnType = Literal[
    "characteristic", "comment", "component", "date", "factor", "input", "output", "parameter", "performer"
]
ColumnIoType = Literal["data", "material_name", "sample_name", "source_name"]

_STRICT = ConfigDict(extra="forbid", frozen=True)


class OntologyAnnotation(BaseModel):
    """Term / URI / version triple; a payload carries ``null`` instead of an empty term."""

    model_config = _STRICT

    term: str = Field(min_length=1)
    uri: str | None = None
    version: str | None = None


class Study(BaseModel):
    model_config = _STRICT

    identifier: str
    title: str | None = None
    description_text: str | None = None
    submission_date: str | None = None
    public_release_date: str | None = None


class Assay(BaseModel):
    model_config = _STRICT

    identifier: str
    #: Studies this assay is registered with (``study_ref``, normalised to a list).
    study_refs: list[str] = Field(default_factory=list)
    title: str | None = None
    description_text: str | None = None
    measurement_type: OntologyAnnotation | None = None
    technology_type: OntologyAnnotation | None = None
    technology_platform: str | None = None


class Contact(BaseModel):
    model_config = _STRICT

    target_type: TargetType
    target_ref: str | None = None
    last_name: str | None = None
    first_name: str | None = None
    mid_initials: str | None = None
    email: str | None = None
    phone: str | None = None
    fax: str | None = None
    postal_address: str | None = None
    affiliation: str | None = None
    roles: list[OntologyAnnotation] = Field(default_factory=list)


class Publication(BaseModel):
    model_config = _STRICT

    target_type: Literal["investigation", "study"]
    target_ref: str | None = None
    pubmed_id: str | None = None
    doi: str | None = None
    authors: str | None = None
    title: str | None = None
    status: OntologyAnnotation | None = None


class Cell(BaseModel):
    model_config = _STRICT

    row_index: int = Field(ge=0)
    value: str | None = None
    annotation: OntologyAnnotation | None = None


class Column(BaseModel):
    """One column of an annotation table, in order of first appearance in the source."""

    model_config = _STRICT

    column_type: ColumnType
    column_io_type: ColumnIoType | None = None
    #: Header value: characteristic/parameter/factor/component/comment name.
    column_value: str | None = None
    annotation: OntologyAnnotation | None = None
    cells: list[Cell] = Field(default_factory=list)


class AnnotationTable(BaseModel):
    model_config = _STRICT

    target_type: Literal["study", "assay"]
    target_ref: str
    table_name: str
    columns: list[Column] = Field(default_factory=list)


class InvestigationPayload(BaseModel):
    """Everything about one investigation; the key on the topic is ``identifier``."""

    model_config = _STRICT

    schema_version: Literal[1] = PAYLOAD_SCHEMA_VERSION
    identifier: str = Field(min_length=1)
    title: str | None = None
    description_text: str | None = None
    submission_date: str | None = None
    public_release_date: str | None = None
    studies: list[Study] = Field(default_factory=list)
    assays: list[Assay] = Field(default_factory=list)
    contacts: list[Contact] = Field(default_factory=list)
    publications: list[Publication] = Field(default_factory=list)
    annotation_tables: list[AnnotationTable] = Field(default_factory=list)
