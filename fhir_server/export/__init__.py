"""Bulk Data export (FHIR Bulk Data Access IG 2.0, https://hl7.org/fhir/uv/bulkdata/).

- `params`: kick-off parameters -> `ExportParams` (pure; 400 or lenient warnings).
- `plan`: an export as a list of single-type search queries (pure).
- `job`: the job document kept with `Storage.put_record` (kind "export-job").
- `ndjson`: the NDJSON files of one job: split, appended, truncated back on resume.
- `execute`: runs one job page by page through `Services.storage` (keyset paging, one snapshot).
- `runner`: the background task that finds jobs, runs each exactly once (leases), expires files.
- `manifest`: the completion manifest (pure).
- `local`: `fhir-server export`, the same export straight from the store into a folder.
"""
