"""The scale-out engine: MongoDB through PyMongo's async API."""

from fhir_server.storage.mongo.engine import MongoStorage

__all__ = ["MongoStorage"]
