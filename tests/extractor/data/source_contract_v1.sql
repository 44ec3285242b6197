-- Contract v1 exactly as arcstream shipped it before contract v2 (tests: a v1 database keeps working).
-- The six relations of the SQL-to-ARC source contract (names and columns as upstream).
-- Related by value, not by foreign key. Keyless upstream relations get a surrogate
-- key "id" (needed by CDC to update/delete single rows, and to keep row order stable).
-- Idempotent: every statement is IF NOT EXISTS.

CREATE TABLE IF NOT EXISTS "vInvestigation" (
    identifier          text PRIMARY KEY,
    title               text,
    description_text    text,
    submission_date     date,
    public_release_date date
);

CREATE TABLE IF NOT EXISTS "vStudy" (
    id                  bigserial PRIMARY KEY,
    identifier          text NOT NULL,
    investigation_ref   text NOT NULL,
    title               text,
    description_text    text,
    submission_date     date,
    public_release_date date
);

CREATE TABLE IF NOT EXISTS "vAssay" (
    id                          bigserial PRIMARY KEY,
    identifier                  text NOT NULL,
    investigation_ref           text NOT NULL,
    study_ref                   text,          -- JSON array of study identifiers, or one bare id
    title                       text,
    description_text            text,
    measurement_type_term       text,
    measurement_type_uri        text,
    measurement_type_version    text,
    technology_type_term        text,
    technology_type_uri         text,
    technology_type_version     text,
    technology_platform         text
);

CREATE TABLE IF NOT EXISTS "vContact" (
    id                  bigserial PRIMARY KEY,
    investigation_ref   text NOT NULL,
    target_type         text NOT NULL,         -- investigation | study | assay
    target_ref          text,
    last_name           text,
    first_name          text,
    mid_initials        text,
    email               text,
    phone               text,
    fax                 text,
    postal_address      text,
    affiliation         text,
    roles               jsonb                  -- [{"term","uri","version"}], arrives already parsed
);

CREATE TABLE IF NOT EXISTS "vPublication" (
    id                  bigserial PRIMARY KEY,
    investigation_ref   text NOT NULL,
    target_type         text NOT NULL,         -- investigation | study
    target_ref          text,
    pubmed_id           text,
    doi                 text,
    authors             text,
    title               text,
    status_term         text,
    status_uri          text,
    status_version      text
);

CREATE TABLE IF NOT EXISTS "vAnnotationTable" (
    id                          bigserial PRIMARY KEY,
    investigation_ref           text NOT NULL,
    target_type                 text NOT NULL,  -- study | assay
    target_ref                  text NOT NULL,
    table_name                  text NOT NULL,
    column_type                 text NOT NULL,  -- characteristic|comment|component|date|factor|input|output|parameter|performer
    column_io_type              text,           -- data|material_name|sample_name|source_name
    column_value                text,
    column_annotation_term      text,
    column_annotation_uri       text,
    column_annotation_version   text,
    row_index                   integer NOT NULL,
    cell_value                  text,
    cell_annotation_term        text,
    cell_annotation_uri         text,
    cell_annotation_version     text
);

-- Child lookups are by investigation_ref (batched "= ANY(...)" queries).
CREATE INDEX IF NOT EXISTS "vStudy_investigation_ref" ON "vStudy" (investigation_ref);
CREATE INDEX IF NOT EXISTS "vAssay_investigation_ref" ON "vAssay" (investigation_ref);
CREATE INDEX IF NOT EXISTS "vContact_investigation_ref" ON "vContact" (investigation_ref);
CREATE INDEX IF NOT EXISTS "vPublication_investigation_ref" ON "vPublication" (investigation_ref);
CREATE INDEX IF NOT EXISTS "vAnnotationTable_investigation_ref" ON "vAnnotationTable" (investigation_ref);
