"""Extraction over the reference corpora: every official example, and Synthea speed."""

from __future__ import annotations

import gzip
import json
import tarfile
import time
from pathlib import Path

import pytest

from fhir_server.fhir.extract import extract_index_values
from fhir_server.fhir.searchparams import SearchParamRegistry


@pytest.fixture(scope="module")
def registry() -> SearchParamRegistry:
    return SearchParamRegistry.load_default()


def test_extracts_every_official_example_without_error(
    shared_data: Path, registry: SearchParamRegistry
) -> None:
    counts: dict[str, int] = {}
    examples = shared_data / "fhir-packages" / "hl7.fhir.r4.examples-4.0.1.tgz"
    with tarfile.open(examples, "r|gz") as tar:
        for member in tar:
            if not (member.isfile() and member.name.endswith(".json")):
                continue
            fh = tar.extractfile(member)
            resource = json.loads(fh.read()) if fh is not None else None
            if (
                isinstance(resource, dict)
                and resource.get("resourceType") in registry.resource_types
            ):
                for value in extract_index_values(resource, registry):
                    counts[type(value).__name__] = counts.get(type(value).__name__, 0) + 1
    assert set(counts) == {
        "TokenValue", "StringValue", "DateValue", "NumberValue", "QuantityValue",
        "ReferenceValue", "UriValue", "CompositeValue",
    }  # fmt: skip


def test_synthea_extraction_speed(shared_data: Path, registry: SearchParamRegistry) -> None:
    """A generous bound (CI machines vary); the measured figures are in the handover notes."""
    folder = shared_data / "synthea-r4"
    bundle = json.loads(gzip.decompress(sorted(folder.glob("*.json.gz"))[0].read_bytes()))
    observations = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
    ]
    extract = registry.extractor("Observation")
    start = time.process_time()
    for _ in range(5):
        for obs in observations:
            extract(obs)
    per_resource = (time.process_time() - start) / (5 * len(observations))
    assert per_resource < 1e-3
