"""FHIR R4 (4.0.1) server for telehealth and remote patient monitoring."""

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"
