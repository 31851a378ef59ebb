"""Pure parts: kick-off parameter parsing, the plan, and the NDJSON files' resume truncation."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest

from fhir_server.errors import BadRequest
from fhir_server.export.job import ExportJob, OutputFile
from fhir_server.export.ndjson import JobFiles
from fhir_server.export.params import ExportParams, collect, parse_kickoff
from fhir_server.export.plan import PATIENT_BATCH, plan
from fhir_server.fhir.resource_types import resource_types
from fhir_server.fhir.searchparams import SearchParamRegistry
from fhir_server.search.parse import SearchContext
from fhir_server.search.query import ChainCriterion, IdCriterion, LastUpdatedCriterion


@pytest.fixture(scope="module")
def search() -> SearchContext:
    registry = SearchParamRegistry.load_default(UTC)
    return SearchContext(registry, UTC, "http://x/fhir", False, frozenset(resource_types()))


def test_defaults_and_formats(search: SearchContext) -> None:
    p = parse_kickoff("system", [], lenient=False, search=search)
    assert p == ExportParams()
    for fmt in ("application/fhir+ndjson", "application/ndjson", "ndjson"):
        got = parse_kickoff("system", [("_outputFormat", fmt)], lenient=False, search=search)
        assert got.output_format == "application/fhir+ndjson"
    with pytest.raises(BadRequest, match="_outputFormat"):
        parse_kickoff("system", [("_outputFormat", "csv")], lenient=False, search=search)
    got = parse_kickoff("system", [("_outputFormat", "csv")], lenient=True, search=search)
    assert got.warnings and "csv" in got.warnings[0]


def test_types_since_elements_patient(search: SearchContext) -> None:
    pairs = [
        ("_type", "Patient,Observation"),
        ("_type", "Patient"),
        ("_since", "2024-01-02T03:04:05Z"),
        ("_elements", "Observation.code,id"),
    ]
    p = parse_kickoff("patient", pairs, lenient=False, search=search)
    assert p.types == ("Patient", "Observation")
    assert p.since == 1704164645 * 1_000_000
    assert p.elements_for("Observation") == ["code", "id"]
    assert p.elements_for("Patient") == ["id"]
    with pytest.raises(BadRequest):
        parse_kickoff("system", [("_type", "Nope")], lenient=False, search=search)
    with pytest.raises(BadRequest):
        parse_kickoff("system", [("_elements", "a.b.c")], lenient=False, search=search)
    with pytest.raises(BadRequest, match="patient"):
        parse_kickoff("system", [("patient", "Patient/1")], lenient=False, search=search)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": "Patient/7"}},
            {"name": "_since", "valueInstant": "2024-01-01T00:00:00Z"},
        ],
    }
    p = parse_kickoff("group", collect([], body), lenient=False, search=search)
    assert p.patients == ("7",)
    with pytest.raises(BadRequest):
        collect([], {"resourceType": "Patient"})


def test_type_filter_splitting_and_validation(search: SearchContext) -> None:
    value = (
        "Observation?code=http://loinc.org|1,http://loinc.org|2,Condition?clinical-status=active"
    )
    p = parse_kickoff("system", [("_typeFilter", value)], lenient=False, search=search)
    assert [(f.rtype, f.query) for f in p.type_filters] == [
        ("Observation", "code=http://loinc.org|1,http://loinc.org|2"),
        ("Condition", "clinical-status=active"),
    ]
    for bad in ("Observation", "Nope?x=1", "Observation?_include=*", "Observation?date=x"):
        with pytest.raises(BadRequest, match="_typeFilter"):
            parse_kickoff("system", [("_typeFilter", bad)], lenient=True, search=search)
    # An unsupported search parameter: 400 (not-supported), or under lenient handling that query
    # is not applied and a warning names it.
    with pytest.raises(BadRequest, match="_typeFilter") as err:
        parse_kickoff("system", [("_typeFilter", "Observation?nope=1")], lenient=False,
                      search=search)  # fmt: skip
    assert err.value.code == "not-supported"
    value = "Observation?nope=1,Observation?status=final"
    p = parse_kickoff("system", [("_typeFilter", value)], lenient=True, search=search)
    assert [(f.rtype, f.query) for f in p.type_filters] == [("Observation", "status=final")]
    assert len(p.warnings) == 1 and "Observation?nope=1" in p.warnings[0]


def test_plan_compartments_batches_and_filters(search: SearchContext) -> None:
    p = parse_kickoff(
        "patient",
        [("_type", "Patient,Observation,Organization"), ("_since", "2024-01-01T00:00:00Z")],
        lenient=True,
        search=search,
    )
    assert p.types == ("Patient", "Observation") and p.warnings
    parts = plan("patient", p, None, search)
    assert [x.rtype for x in parts] == ["Patient", "Observation"]
    assert isinstance(parts[0].clauses[0].criteria[0], LastUpdatedCriterion)
    assert len(parts[0].clauses) == 1  # every Patient
    assert all(isinstance(c, ChainCriterion) for c in parts[1].clauses[1].criteria)
    many = tuple(f"p{i}" for i in range(PATIENT_BATCH + 1))
    parts = plan("group", ExportParams(types=("Patient",)), many, search)
    firsts = [x.clauses[0].criteria[0] for x in parts]
    assert [len(c.ids) for c in firsts if isinstance(c, IdCriterion)] == [PATIENT_BATCH, 1]
    assert plan("group", ExportParams(), (), search) == []
    f = parse_kickoff(
        "system",
        [
            ("_type", "Observation"),
            ("_typeFilter", "Observation?status=final"),
            ("_typeFilter", "Observation?status=amended"),
        ],
        lenient=False,
        search=search,
    )
    assert len(plan("system", f, None, search)) == 2


def test_files_split_and_truncate_back_on_resume(tmp_path: Path) -> None:
    job = ExportJob("j", "system", "r", "b", ExportParams(), 0)
    files = JobFiles(tmp_path, job, lines_per_file=2)
    files.prepare()
    files.append("Patient", [b"1", b"2", b"3"])
    files.flush()
    checkpoint = ExportJob.from_doc(job.to_doc())
    files.append("Patient", [b"4", b"5"])  # then the process dies before the next checkpoint
    files.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "Patient-1.ndjson",
        "Patient-2.ndjson",
        "Patient-3.ndjson",
    ]
    resumed = JobFiles(tmp_path, checkpoint, lines_per_file=2)
    resumed.prepare()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Patient-1.ndjson", "Patient-2.ndjson"]
    assert (tmp_path / "Patient-2.ndjson").read_bytes() == b"3\n"
    resumed.append("Patient", [b"4"])
    resumed.close()
    assert (tmp_path / "Patient-2.ndjson").read_bytes() == b"3\n4\n"
    assert [(f.name, f.count) for f in checkpoint.files] == [
        ("Patient-1.ndjson", 2),
        ("Patient-2.ndjson", 2),
    ]
    assert OutputFile("Patient", "x").to_json()["count"] == 0
