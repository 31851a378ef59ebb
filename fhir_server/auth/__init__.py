"""SMART on FHIR: the built-in authorization server and the enforcement of granted access."""
