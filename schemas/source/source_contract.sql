-- The six relations of the SQL-to-ARC source contract (names and columns as upstream), with the
-- optional columns of contract v2 (docs/contract.md explains every column, for views too).
-- Related by value, not by foreign key. Keyless upstream relations get a surrogate
-- key "id" (needed by CDC to update/delete single rows, and to keep row order stable).
-- Dates are text so that a time of day and the source's own form are kept as given
-- (date or timestamp columns work too: they become ISO 8601).
-- JSON columns (jsonb here) may also be json or JSON text in a provider's views.
-- Idempotent: every statement is IF NOT EXISTS (an existing v1 table is left as it is, and keeps working).

CREATE TABLE IF NOT EXISTS "vInvestigation" (
    identifier                  text PRIMARY KEY,
    title                       text,
    description_text            text,
    submission_date             text,
    public_release_date         text,
    -- v2 (optional)
    comments                    jsonb,          -- [{"name","value"}]
    license                     text,           -- licence text of the ARC (e.g. "CC-BY-4.0" or the full text)
    ontology_source_references  jsonb           -- [{"name","file","version","description"}]
);

CREATE TABLE IF NOT EXISTS "vStudy" (
    id                  bigserial PRIMARY KEY,
    identifier          text NOT NULL,
    investigation_ref   text NOT NULL,
    title               text,
    description_text    text,
    submission_date     text,
    public_release_date text,
    -- v2 (optional)
    comments            jsonb,                 -- [{"name","value"}]
    design_descriptors  jsonb                  -- [{"term","uri","version"}]
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
    technology_platform         text,          -- the platform's term (name)
    -- v2 (optional)
    technology_platform_uri     text,
    technology_platform_version text,
    comments                    jsonb          -- [{"name","value"}]
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
    roles               jsonb,                 -- [{"term","uri","version"}], arrives already parsed
    -- v2 (optional)
    orcid               text,                  -- 0000-0002-1825-0097 or https://orcid.org/0000-0002-1825-0097
    comments            jsonb                  -- [{"name","value"}]; further identifiers go here too
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
    status_version      text,
    -- v2 (optional)
    comments            jsonb                  -- [{"name","value"}]
);

CREATE TABLE IF NOT EXISTS "vAnnotationTable" (
    id                          bigserial PRIMARY KEY,
    investigation_ref           text NOT NULL,
    target_type                 text NOT NULL,  -- study | assay
    target_ref                  text NOT NULL,
    table_name                  text NOT NULL,
    column_type                 text,           -- characteristic|comment|component|date|factor|input|output|parameter|performer
                                                -- v2: protocol_ref|protocol_type|protocol_description|protocol_uri|protocol_version;
                                                -- v2: NULL declares a table without columns (table fields only)
    column_io_type              text,           -- data|material_name|sample_name|source_name
    column_value                text,
    column_annotation_term      text,
    column_annotation_uri       text,
    column_annotation_version   text,
    row_index                   integer NOT NULL,
    cell_value                  text,
    cell_annotation_term        text,
    cell_annotation_uri         text,
    cell_annotation_version     text,
    -- v2 (optional): the column's position in its table; equal headers at different positions stay distinct
    column_index                integer
);

-- Child lookups are by investigation_ref (batched "= ANY(...)" queries).
CREATE INDEX IF NOT EXISTS "vStudy_investigation_ref" ON "vStudy" (investigation_ref);
CREATE INDEX IF NOT EXISTS "vAssay_investigation_ref" ON "vAssay" (investigation_ref);
CREATE INDEX IF NOT EXISTS "vContact_investigation_ref" ON "vContact" (investigation_ref);
CREATE INDEX IF NOT EXISTS "vPublication_investigation_ref" ON "vPublication" (investigation_ref);
CREATE INDEX IF NOT EXISTS "vAnnotationTable_investigation_ref" ON "vAnnotationTable" (investigation_ref);
