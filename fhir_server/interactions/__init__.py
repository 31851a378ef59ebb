"""One module per FHIR interaction; `router.dispatch` maps a request to one of them."""
