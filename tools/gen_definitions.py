"""Generate the search tables in `fhir_server/fhir/definitions/` from the official R4 core package.

Usage: python tools/gen_definitions.py [--package PATH.tgz] [--out DIR]

Writes three compact JSON files (no pretty-printing, they ship with the server):

- `search_parameters.json`: {"params": [...]}, one entry per (base type, code) for every resource type
  in `resource_types.json` plus the `Resource` / `DomainResource` level ones (which apply to every
  type). Entry keys: code, base, type, url, description (the base's own line of a multi-base
  description), expression (narrowed to the base: `|` terms rooted at another resource type are
  dropped), targets, components [{definition, code, type, expression}], multipleOr, multipleAnd,
  modifiers, comparators (the last four only when the package sets them).
- `element_types.json`: {"types": {type: {element: type | [choice types]}}, "bases": {type: parent}}
  for every base resource, datatype and backbone element (backbone types are named by their path,
  `Observation.component`; a contentReference points at the referenced path). The FHIRPath compiler
  uses it to find choice keys (`value` -> `valueQuantity`) and the FHIR type of each value it yields.
- `compartments.json`: {compartment: {resource type: [param codes]}} from the CompartmentDefinitions
  (`{def}`, the compartment's own resource, is dropped: it is matched by id, not by a parameter).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout: use the package's own narrowing

from fhir_server.fhir.fhirpath.narrow import narrow_expression, split_union  # noqa: E402

DEFAULT_PACKAGE = ROOT.parent / "shared" / "data" / "fhir-packages" / "hl7.fhir.r4.core-4.0.1.tgz"
DEFAULT_OUT = ROOT / "fhir_server" / "fhir" / "definitions"

JsonObj = dict[str, Any]
SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
SYSTEM_TYPES = {
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}
MAX_DESCRIPTION = 200  # characters; longer ones are cut to their first sentence
# Examples shipped inside the core package that are not part of the specification's search API.
EXAMPLE_PARAMS = {"example", "example-reference", "example-extension"}
# The R4 package pairs DocumentReference-relationship's component expressions with each other's
# definitions (`code` with the reference param relatesto, `target` with the token param relation);
# the expressions and their order (relation$relatesTo, as the spec describes) are right, so the
# definitions are swapped back.
COMPONENT_FIXES = {
    ("http://hl7.org/fhir/SearchParameter/DocumentReference-relationship", "code"): (
        "http://hl7.org/fhir/SearchParameter/DocumentReference-relation"
    ),
    ("http://hl7.org/fhir/SearchParameter/DocumentReference-relationship", "target"): (
        "http://hl7.org/fhir/SearchParameter/DocumentReference-relatesto"
    ),
}
# Parameters of the search framework that have no SearchParameter resource in the R4 package.
FRAMEWORK_PARAMS: list[JsonObj] = [
    {"code": "_list", "type": "special", "description": "Resources in the given List"},
    {"code": "_has", "type": "special", "description": "Reverse chaining"},
    {"code": "_type", "type": "token", "description": "Resource type (system-level search)"},
]


def read_package(path: Path) -> Iterator[JsonObj]:
    """The package's SearchParameter, StructureDefinition and CompartmentDefinition resources."""
    wanted = ("SearchParameter-", "StructureDefinition-", "CompartmentDefinition-")
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            if member.isfile() and name.endswith(".json") and name.startswith(wanted):
                fh = tar.extractfile(member)
                if fh is not None:
                    yield json.loads(fh.read())


def narrow_description(text: str, base: str) -> str:
    """The base's own line of a multi-base description, shortened to its first sentence if long."""
    found = text.strip().split("\n")[0].strip()
    for line in text.splitlines():
        match = re.match(r"\s*\* \[(\w+)\]\([^)]*\): (.*)", line)
        if match and match.group(1) == base:
            found = match.group(2).strip()
            break
    if len(found) <= MAX_DESCRIPTION:
        return found
    sentence = found.split(". ", 1)[0]
    if len(sentence) <= MAX_DESCRIPTION:
        return sentence + "."
    return found[: MAX_DESCRIPTION - 1].rsplit(" ", 1)[0] + "…"


def element_types(sds: list[JsonObj]) -> JsonObj:
    """Element name -> type (or choice list) per type, and each type's parent type."""
    types: dict[str, dict[str, Any]] = {}
    bases: dict[str, str] = {}
    for sd in sds:
        if sd.get("derivation") != "specialization" and sd["id"] not in ("Resource", "Element"):
            continue
        if sd["kind"] not in ("resource", "complex-type", "primitive-type"):
            continue
        parent = sd.get("baseDefinition", "").removeprefix(SD_PREFIX)
        if parent:
            bases[sd["type"]] = parent
        if sd["kind"] == "primitive-type":
            continue
        for el in sd["snapshot"]["element"]:
            path: str = el["path"]
            if "." not in path:
                continue
            owner, name = path.rsplit(".", 1)
            codes = [type_code(t) for t in el.get("type", [])]
            if "contentReference" in el:
                value: Any = el["contentReference"].lstrip("#")
            elif codes in (["BackboneElement"], ["Element"]):
                value = path
            elif name.endswith("[x]"):
                name, value = name[:-3], codes
            else:
                value = codes[0]
            types.setdefault(owner, {})[name] = value
    return {"types": types, "bases": bases}


def type_code(t: JsonObj) -> str:
    for ext in t.get("extension", []):
        if ext.get("url") == FHIR_TYPE_EXT:
            return str(ext["valueUrl"])
    code = str(t["code"])
    return SYSTEM_TYPES.get(code, code)


def reference_targets(term: str, declared: list[str], elements: JsonObj) -> set[str]:
    """The targets one union term can reach: `resolve() is T`, else the element's targetProfiles."""
    match = re.search(r"resolve\(\) is (\w+)", term)
    if match:
        return {match.group(1)}
    path = re.sub(r"\.where\(.*?\)|\bas \w+|\.as\(\w+\)|[()]", "", term).strip()
    profiles = elements.get(path)
    return set(profiles) if profiles is not None else set(declared)


def target_profiles(sds: list[JsonObj]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for sd in sds:
        if sd["kind"] != "resource" or sd.get("derivation") != "specialization":
            continue
        for el in sd["snapshot"]["element"]:
            names = [
                p.removeprefix(SD_PREFIX)
                for t in el.get("type", [])
                if t["code"] == "Reference"
                for p in t.get("targetProfile", [])
            ]
            if names:
                out[el["path"].replace("[x]", "")] = names
    return out


def search_parameters(
    sps: list[JsonObj], sds: list[JsonObj], resource_types: set[str]
) -> list[JsonObj]:
    by_url = {sp["url"]: sp for sp in sps}
    profiles = target_profiles(sds)
    out: dict[tuple[str, str], JsonObj] = {}
    for sp in sps:
        if sp["id"] in EXAMPLE_PARAMS:
            continue
        for base in sp.get("base") or []:
            if base not in resource_types and base not in ("Resource", "DomainResource"):
                continue
            entry: JsonObj = {
                "code": sp["code"],
                "base": base,
                "type": sp["type"],
                "url": sp["url"],
                "description": narrow_description(sp.get("description", ""), base),
            }
            expr = narrow_expression(sp.get("expression") or "", base, resource_types)
            if expr:
                entry["expression"] = expr
            if sp.get("target"):
                declared = [t for t in sp["target"] if t in resource_types or t == "Resource"]
                reach: set[str] = set()
                for term in split_union(expr):
                    reach |= reference_targets(term, declared, profiles)
                narrowed = [t for t in declared if t in reach or "Resource" in reach] or declared
                # "*" stands for every resource type but Parameters (80 parameters reach them all).
                everything = set(narrowed) >= resource_types - {"Parameters"}
                entry["targets"] = "*" if everything else narrowed
            if sp.get("component"):
                entry["components"] = [component(sp["url"], c, by_url) for c in sp["component"]]
            for key, src in (("multipleOr", "multipleOr"), ("multipleAnd", "multipleAnd")):
                if src in sp:
                    entry[key] = sp[src]
            for key, src in (("modifiers", "modifier"), ("comparators", "comparator")):
                if src in sp:
                    entry[key] = sp[src]
            out[(base, sp["code"])] = entry
    for extra in FRAMEWORK_PARAMS:
        url = "http://hl7.org/fhir/SearchParameter/Resource-" + extra["code"].lstrip("_")
        out[("Resource", extra["code"])] = {"base": "Resource", "url": url, **extra}
    return [out[k] for k in sorted(out)]


def component(url: str, comp: JsonObj, by_url: dict[str, JsonObj]) -> JsonObj:
    definition = str(COMPONENT_FIXES.get((url, comp["expression"]), comp["definition"]))
    ref = by_url.get(definition)
    if ref is None:
        raise SystemExit(f"composite component {definition} not found in the package")
    return {
        "definition": definition,
        "code": ref["code"],
        "type": ref["type"],
        "expression": comp["expression"],
    }


def compartments(cds: list[JsonObj]) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for cd in cds:
        if (
            not cd["url"].startswith("http://hl7.org/fhir/CompartmentDefinition/")
            or cd["id"] == "example"
        ):
            continue
        table = out.setdefault(cd["code"], {})
        for res in cd.get("resource", []):
            params = [p for p in res.get("param", []) if p != "{def}"]
            if params or cd["code"] == res["code"]:
                table[res["code"]] = params
    return out


def dump(path: Path, data: Any) -> None:
    path.write_text(
        json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n", encoding="utf-8"
    )
    print(f"wrote {path.name}: {path.stat().st_size // 1024} KB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--package", type=Path, default=DEFAULT_PACKAGE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    listed = json.loads((args.out / "resource_types.json").read_text(encoding="utf-8"))
    resource_types = {r["type"] for r in listed}
    by_type: dict[str, list[JsonObj]] = {}
    for res in read_package(args.package):
        by_type.setdefault(res["resourceType"], []).append(res)
    sps = sorted(by_type["SearchParameter"], key=lambda r: str(r["id"]))
    sds = sorted(by_type["StructureDefinition"], key=lambda r: str(r["id"]))
    dump(
        args.out / "search_parameters.json", {"params": search_parameters(sps, sds, resource_types)}
    )
    dump(args.out / "element_types.json", element_types(sds))
    dump(args.out / "compartments.json", compartments(by_type["CompartmentDefinition"]))


if __name__ == "__main__":
    main()
