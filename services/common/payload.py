"""The investigation payload: what travels on ``arc.investigations``.

One payload holds everything the source relations say about one
investigation, grouped and lightly normalised (JSON columns parsed, duplicate
study/assay rows merged, annotation cells grouped into tables and columns) but
not interpreted: deciding what arctrl can take is the builder's job. Fields of
the source contract v2 (docs/contract.md: comments, ORCIDs, licence, design
descriptors, ontology source references, protocol columns, ...) have defaults,
so a v1 payload is a valid payload and a v1 source fills them with nothing.

``schemas/investigation.schema.json`` is generated from these models
(``arcstream schemas write``) and a test checks both agree.

The extractors validate with :func:`validate_document`, the same schema
validating into plain dicts: building thousands of frozen model instances
per second only to serialise them again was the biggest cost of a snapshot.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import SchemaValidator

#: Bumped when the payload shape changes incompatibly; carried in a message header too.
PAYLOAD_SCHEMA_VERSION: Literal[1] = 1

TargetType = Literal["investigation", "study", "assay"]
ColumnType = Literal[
    "characteristic",
    "comment",
    "component",
    "date",
    "factor",
    "input",
    "output",
    "parameter",
    "performer",
    # contract v2: the ISA protocol columns
    "protocol_ref",
    "protocol_type",
    "protocol_description",
    "protocol_uri",
    "protocol_version",
]
ColumnIoType = Literal["data", "material_name", "sample_name", "source_name"]

_STRICT = ConfigDict(extra="forbid", frozen=True)


class OntologyAnnotation(BaseModel):
    """Term / URI / version triple; a payload carries ``null`` instead of an empty term."""

    model_config = _STRICT

    term: str = Field(min_length=1)
    uri: str | None = None
    version: str | None = None


class Comment(BaseModel):
    """A name/value comment (contract v2); the builder drops one without a name, with a warning."""

    model_config = _STRICT

    name: str | None = None
    value: str | None = None


class OntologySourceReference(BaseModel):
    """An ontology an investigation's annotations refer to (contract v2)."""

    model_config = _STRICT

    name: str = Field(min_length=1)
    file: str | None = None
    version: str | None = None
    description: str | None = None


class Study(BaseModel):
    model_config = _STRICT

    identifier: str
    title: str | None = None
    description_text: str | None = None
    submission_date: str | None = None
    public_release_date: str | None = None
    #: Contract v2 (absent columns give the defaults).
    comments: list[Comment] = Field(default_factory=list)
    design_descriptors: list[OntologyAnnotation] = Field(default_factory=list)


class Assay(BaseModel):
    model_config = _STRICT

    identifier: str
    #: Studies this assay is registered with (``study_ref``, normalised to a list).
    study_refs: list[str] = Field(default_factory=list)
    title: str | None = None
    description_text: str | None = None
    measurement_type: OntologyAnnotation | None = None
    technology_type: OntologyAnnotation | None = None
    #: A name (contract v1), or an ontology annotation when the source has its URI/version columns (v2).
    technology_platform: str | OntologyAnnotation | None = None
    comments: list[Comment] = Field(default_factory=list)


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
    #: Contract v2.
    orcid: str | None = None
    comments: list[Comment] = Field(default_factory=list)


class Publication(BaseModel):
    model_config = _STRICT

    target_type: Literal["investigation", "study"]
    target_ref: str | None = None
    pubmed_id: str | None = None
    doi: str | None = None
    authors: str | None = None
    title: str | None = None
    status: OntologyAnnotation | None = None
    comments: list[Comment] = Field(default_factory=list)


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
    #: Contract v2: investigation comments, licence text, ontology source references.
    comments: list[Comment] = Field(default_factory=list)
    license: str | None = None
    ontology_source_references: list[OntologySourceReference] = Field(default_factory=list)
    studies: list[Study] = Field(default_factory=list)
    assays: list[Assay] = Field(default_factory=list)
    contacts: list[Contact] = Field(default_factory=list)
    publications: list[Publication] = Field(default_factory=list)
    annotation_tables: list[AnnotationTable] = Field(default_factory=list)


def _models_as_typed_dicts(schema: Any) -> Any:
    """A core schema with every model replaced by a typed dict of the same fields.

    Field schemas (types, constraints, defaults) and the model's config (``extra``
    forbidden, string settings) are kept as they are, so what validates is exactly
    what the models accept; only the output is plain data instead of instances.
    """
    if isinstance(schema, list):
        return [_models_as_typed_dicts(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("type") != "model":
        return {key: _models_as_typed_dicts(value) for key, value in schema.items()}
    fields_schema = schema["schema"]
    if fields_schema.get("type") != "model-fields" or fields_schema.get("computed_fields"):
        raise TypeError(f"{schema['cls'].__name__}: only plain field models can be validated as typed dicts")
    config = schema.get("config", {})
    typed_dict: dict[str, Any] = {
        "type": "typed-dict",
        "fields": {
            name: {
                "type": "typed-dict-field",
                "schema": _models_as_typed_dicts(field["schema"]),
                "required": field["schema"].get("type") != "default",
            }
            for name, field in fields_schema["fields"].items()
        },
        "extra_behavior": config.get("extra_fields_behavior", "ignore"),
        "config": config,
    }
    if "ref" in schema:
        typed_dict["ref"] = schema["ref"]
    return typed_dict


_DOCUMENT_VALIDATOR = SchemaValidator(_models_as_typed_dicts(InvestigationPayload.__pydantic_core_schema__))


def validate_document(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` validated against :class:`InvestigationPayload`, as plain data.

    Raises :class:`pydantic.ValidationError` exactly where ``model_validate`` would.
    """
    validated: dict[str, Any] = _DOCUMENT_VALIDATOR.validate_python(document)
    return validated


def encode_document(document: dict[str, Any]) -> bytes:
    """A validated document as it goes on the topic: the bytes ``model_dump_json`` would give."""
    return orjson.dumps(document)
