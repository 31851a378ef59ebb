"""The HTTP layer: FastAPI routes that turn HTTP into FhirRequests and FhirErrors into outcomes."""
