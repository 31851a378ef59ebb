"""Tables and indexes of the SQLite engine.

`history` holds every version's bytes once; `resources` is the current-version pointer per
(type, id), so a read is two primary-key lookups and nothing is stored twice. Search values live in
one side table per value type, keyed by `resources.pk`, replaced on every write of the resource.
Equality indexes end with `pk`, so the rows matching one value come in resource order and a
first page can stop after `_count` rows instead of reading every match.
"""

# 2: idx_pair (fhir/paired_index.py); a version-1 store gets its pairs built at open.
# 3: idx_reference_url holds only rows with a url (migrate.py rebuilds it).
SCHEMA_VERSION = 3

DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    method TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS history_version ON history (type, id, version);
CREATE INDEX IF NOT EXISTS history_type_time ON history (type, last_updated);
CREATE INDEX IF NOT EXISTS history_time ON history (last_updated);

CREATE TABLE IF NOT EXISTS resources (
    pk INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    seq INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS resources_type_id ON resources (type, id);
CREATE INDEX IF NOT EXISTS resources_type_time ON resources (type, last_updated);
-- (type, pk): a type's resources in pk order, for scans that stop after a page.
CREATE INDEX IF NOT EXISTS resources_type ON resources (type);

-- Index tables: a "search" index per table, leading with (type, param, value) and ending with pk so
-- that equal values come in resource order; a "probe" index leading with (pk, param) for testing one
-- resource. Both cover the columns queries read, so no lookup goes back to the table's rows.
CREATE TABLE IF NOT EXISTS idx_token (
    pk INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    system TEXT, code TEXT, text TEXT
);
CREATE INDEX IF NOT EXISTS idx_token_code ON idx_token (type, param, code, pk, system);
CREATE INDEX IF NOT EXISTS idx_token_system ON idx_token (type, param, system, pk);
CREATE INDEX IF NOT EXISTS idx_token_pk ON idx_token (pk, param, code, system);

CREATE TABLE IF NOT EXISTS idx_string (
    pk INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, norm TEXT NOT NULL, exact TEXT
);
CREATE INDEX IF NOT EXISTS idx_string_norm ON idx_string (type, param, norm, pk);
CREATE INDEX IF NOT EXISTS idx_string_pk ON idx_string (pk, param, norm);

CREATE TABLE IF NOT EXISTS idx_date (
    pk INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    low INTEGER NOT NULL, high INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_date_low ON idx_date (type, param, low, high, pk);
CREATE INDEX IF NOT EXISTS idx_date_high ON idx_date (type, param, high, low, pk);
CREATE INDEX IF NOT EXISTS idx_date_pk ON idx_date (pk, param, low, high);

CREATE TABLE IF NOT EXISTS idx_number (
    pk INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_number_value ON idx_number (type, param, value, pk);
CREATE INDEX IF NOT EXISTS idx_number_pk ON idx_number (pk, param, value);

CREATE TABLE IF NOT EXISTS idx_quantity (
    pk INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    value REAL NOT NULL, system TEXT, code TEXT, unit TEXT
);
CREATE INDEX IF NOT EXISTS idx_quantity_value ON idx_quantity (type, param, value, pk, code, system);
CREATE INDEX IF NOT EXISTS idx_quantity_pk ON idx_quantity (pk, param, value, code, system);

CREATE TABLE IF NOT EXISTS idx_reference (
    pk INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    target_type TEXT, target_id TEXT, url TEXT
);
CREATE INDEX IF NOT EXISTS idx_reference_target
    ON idx_reference (type, param, target_id, pk, target_type);
CREATE INDEX IF NOT EXISTS idx_reference_any ON idx_reference (target_id, target_type, type, param);
CREATE INDEX IF NOT EXISTS idx_reference_pk ON idx_reference (pk, param, target_id, target_type);

CREATE TABLE IF NOT EXISTS idx_uri (
    pk INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, uri TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_uri_value ON idx_uri (type, param, uri, pk);
CREATE INDEX IF NOT EXISTS idx_uri_pk ON idx_uri (pk, param, uri);

-- One row per combination of a two-component composite's values: the first component is a
-- token (system1, code1); the second a token (system2, code2), a quantity (value2, system2, code2),
-- a date (low2, high2), a number (value2) or a string (str2).
CREATE TABLE IF NOT EXISTS idx_composite (
    pk INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    system1 TEXT, code1 TEXT, system2 TEXT, code2 TEXT,
    value2 REAL, low2 INTEGER, high2 INTEGER, str2 TEXT
);
CREATE INDEX IF NOT EXISTS idx_composite_code ON idx_composite
    (type, param, code1, pk, system1, code2, system2, value2, low2, high2, str2);
CREATE INDEX IF NOT EXISTS idx_composite_pk ON idx_composite
    (pk, param, code1, system1, code2, system2, value2, low2, high2, str2);

-- (reference, token or date) pairs of one resource, see fhir/paired_index.py. The key index serves
-- "this patient's readings of this code [in this window] [latest first]" in one range scan.
CREATE TABLE IF NOT EXISTS idx_pair (
    pk INTEGER NOT NULL, type TEXT NOT NULL, ref_param TEXT NOT NULL, target_type TEXT,
    target_id TEXT NOT NULL, param TEXT NOT NULL, system TEXT, code TEXT,
    low INTEGER, high INTEGER, multi INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_pair_key ON idx_pair
    (type, ref_param, target_id, param, code, high, pk, low, system, target_type, multi);
CREATE INDEX IF NOT EXISTS idx_pair_pk ON idx_pair (pk);
"""

# Only absolute references and canonicals have a url; local ones (most) leave it NULL, and `url = ?`
# lets the planner use the partial index.
URL_INDEX = (
    "CREATE INDEX IF NOT EXISTS idx_reference_url ON idx_reference (type, param, url, pk) "
    "WHERE url IS NOT NULL"
)
DDL += URL_INDEX + ";\n"

# `_text` / `_content`: one row per current resource, rowid = resources.pk.
FTS_DDL = """
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(
    narrative, content, tokenize = 'unicode61 remove_diacritics 2', detail = column
);
"""

INDEX_TABLES = (
    "idx_token",
    "idx_string",
    "idx_date",
    "idx_number",
    "idx_quantity",
    "idx_reference",
    "idx_uri",
    "idx_composite",
    "idx_pair",
)
