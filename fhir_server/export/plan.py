"""An export as a list of single-type search queries ("parts"). Pure: no I/O.

Every part is the AND of: its type, `_since`/`_until` on `_lastUpdated`, the Patient compartment
(patient and group level) and one `_typeFilter` query of its type. Several `_typeFilter` queries
of a type are ORed: each becomes its own part, and a resource already exported by an earlier part
of the same type is skipped (`execute` asks the engine with `_id` + the earlier part's criteria),
so each resource is written once. Large patient lists are cut into batches the same way.

Patient compartment (R4 CompartmentDefinition, `fhir/compartments.py`): a resource belongs to a
patient's compartment when one of its compartment parameters references that patient; the Patient
itself by id. With no patient list (Patient/$export) a resource belongs when one of those
parameters references any existing Patient (a chain with no inner criteria).
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.export.params import RELEVANT_PROVENANCE, ExportParams, Level, filter_pairs
from fhir_server.fhir.compartments import compartment_params, compartment_resource_types
from fhir_server.search.parse import SearchContext, parse_search
from fhir_server.search.query import (
    ChainCriterion,
    Clause,
    Criterion,
    IdCriterion,
    LastUpdatedCriterion,
    ReferenceCriterion,
)

PATIENT_BATCH = 200


@dataclass(frozen=True)
class Part:
    rtype: str
    clauses: tuple[Clause, ...]


def export_types(level: Level, params: ExportParams, available: frozenset[str]) -> list[str]:
    if params.types:
        return list(params.types)
    if level == "system":
        return sorted(available)
    return sorted(set(compartment_resource_types("Patient")) & available)


def _time_clauses(params: ExportParams) -> list[Clause]:
    out: list[Clause] = []
    if params.since is not None:  # lastUpdated > since
        out.append(Clause((LastUpdatedCriterion("gt", params.since, params.since + 1),)))
    if params.until is not None:  # lastUpdated < until
        out.append(Clause((LastUpdatedCriterion("lt", params.until, params.until + 1),)))
    return out


def compartment_clause(rtype: str, patients: tuple[str, ...] | None) -> Clause | None:
    """Membership in the compartments of `patients` (None: of any Patient); None if the type
    is not in the Patient compartment."""
    if rtype == "Patient":
        return None if patients is None else Clause((IdCriterion(patients),))
    params = compartment_params("Patient", rtype)
    if not params:
        return None
    criteria: list[Criterion]
    if patients is None:
        criteria = [ChainCriterion(p, ("Patient",), ()) for p in params]
    else:
        criteria = [ReferenceCriterion(p, "Patient", pid) for pid in patients for p in params]
    return Clause(tuple(criteria))


def _filter_sets(
    rtype: str, params: ExportParams, search: SearchContext
) -> list[tuple[Clause, ...]]:
    queries = [f.query for f in params.type_filters if f.rtype == rtype]
    if not queries:
        return [()]
    strict = SearchContext(search.registry, search.tz, search.base_url, False,
                           search.resource_types)  # fmt: skip
    return [
        parse_search(strict, (rtype,), filter_pairs(q), default_count=1, max_count=1).query.clauses
        for q in queries
    ]


def plan(
    level: Level,
    params: ExportParams,
    patients: tuple[str, ...] | None,
    search: SearchContext,
) -> list[Part]:
    """The parts of an export, grouped by type. `patients`: the patients whose compartments are
    exported (None: every patient; ignored at system level)."""
    time = _time_clauses(params)
    parts: list[Part] = []
    for rtype in export_types(level, params, search.resource_types):
        batches: list[tuple[str, ...] | None] = [None]
        if level != "system":
            if rtype != "Patient" and not compartment_params("Patient", rtype):
                continue
            if patients is not None:
                batches = [
                    patients[i : i + PATIENT_BATCH] for i in range(0, len(patients), PATIENT_BATCH)
                ]
        for batch in batches:
            compartment = compartment_clause(rtype, batch) if level != "system" else None
            base = [*time, *([compartment] if compartment else [])]
            for extra in _filter_sets(rtype, params, search):
                parts.append(Part(rtype, (*base, *extra)))
    if RELEVANT_PROVENANCE in params.associated:
        parts += _relevant_provenance(parts)
    return parts


def _relevant_provenance(parts: list[Part]) -> list[Part]:
    """One more Provenance part: Provenance whose `target` is a resource some part exports (an OR
    of chains, each carrying that part's criteria). Nothing when every Provenance is exported."""
    if any(p.rtype == "Provenance" and not p.clauses for p in parts):
        return []
    chains: list[Criterion] = [
        ChainCriterion("target", (p.rtype,), p.clauses) for p in parts if p.rtype != "Provenance"
    ]
    return [Part("Provenance", (Clause(tuple(chains)),))] if chains else []
