"""Pure FHIR knowledge: definitions, validation, search-value extraction. No I/O beyond package data."""
