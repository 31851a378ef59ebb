"""Generate `fhir_server/fhir/definitions/structures.json.gz` from the official R4 core package.

Usage: python tools/gen_structures.py [--package PATH.tgz] [--out DIR]

The table holds, for every base resource type, complex datatype and backbone element of R4 (4.0.1),
its elements (name, cardinality, effective type names, contentReference, binding), the JSON kind and
regex of each primitive type, and the codes of every value set bound *required* to an element, as far
as the value set can be expanded from the package itself. Bindings that cannot be expanded (external
code systems such as UCUM, BCP-13 mime types, ISO 4217) are listed under `skippedBindings`.

Element record (a JSON object, keys kept short because the file ships with the server):
  n: element name, `[x]` kept for choice elements      min/max: cardinality, max "*" or a number
  t: effective type names; a backbone element's type is its own path (`Observation.component`),
     a contentReference's type is the referenced path (`Questionnaire.item`)
  ref: contentReference target (informational)         p: type profiles (e.g. SimpleQuantity)
  tp: Reference/canonical target type names            b: [strength, value set url]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PACKAGE = ROOT.parent / "shared" / "data" / "fhir-packages" / "hl7.fhir.r4.core-4.0.1.tgz"
DEFAULT_OUT = ROOT / "fhir_server" / "fhir" / "definitions"

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
INTEGER_TYPES = {"integer", "positiveInt", "unsignedInt"}
# Only these binding targets are expanded: the validator enforces `code`; the Coding/CodeableConcept
# expansions are kept for the later profile validator.
EXPANDED_TYPES = {"code", "Coding", "CodeableConcept"}

JsonObj = dict[str, Any]


def load_package(path: Path) -> dict[str, list[JsonObj]]:
    """StructureDefinitions, ValueSets and CodeSystems of the package, by resourceType."""
    wanted = ("StructureDefinition-", "ValueSet-", "CodeSystem-")
    out: dict[str, list[JsonObj]] = {"StructureDefinition": [], "ValueSet": [], "CodeSystem": []}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            if not (member.isfile() and name.endswith(".json") and name.startswith(wanted)):
                continue
            fh = tar.extractfile(member)
            if fh is None:
                continue
            res = json.loads(fh.read())
            if res.get("resourceType") in out:
                out[res["resourceType"]].append(res)
    return out


def is_base_definition(sd: JsonObj) -> bool:
    # Profiles (derivation=constraint, e.g. SimpleQuantity, vitalsigns) and logical models are not
    # types an instance can have; the abstract bases (Element, Resource, ...) are kept for `_x`.
    return sd["kind"] in ("primitive-type", "complex-type", "resource") and (
        sd.get("derivation") != "constraint"
    )


def type_code(t: JsonObj, base_path: str) -> str:
    code: str = t["code"]
    if not code.startswith("http://hl7.org/fhirpath/System."):
        return code
    if base_path == "Resource.id":
        # R4 declares Resource.id as `id`; the snapshot only records the FHIRPath system type.
        return "id"
    for ext in t.get("extension", []):
        if ext.get("url") == FHIR_TYPE_EXT:
            return str(ext["valueUrl"])
    return "string"


def short_names(urls: Iterable[str]) -> list[str]:
    return [u[len(SD_PREFIX) :] if u.startswith(SD_PREFIX) else u for u in urls]


def build_tables(sd: JsonObj) -> dict[str, JsonObj]:
    """Tables of one StructureDefinition: the type itself and each of its backbone elements."""
    elements: list[JsonObj] = [e for e in sd["snapshot"]["element"] if "sliceName" not in e]
    root = elements[0]["path"]
    paths = {e["path"] for e in elements}
    parents = {p.rsplit(".", 1)[0] for p in paths if "." in p}
    tables: dict[str, JsonObj] = {
        root: {"kind": sd["kind"], "abstract": bool(sd.get("abstract")), "elements": []}
    }
    for e in elements[1:]:
        path: str = e["path"]
        parent, name = path.rsplit(".", 1)
        rec: JsonObj = {"n": name, "min": e.get("min", 0), "max": e.get("max", "*")}
        if path in parents:
            rec["t"] = [path]
            tables[path] = {"kind": "backbone", "abstract": False, "elements": []}
        elif "contentReference" in e:
            ref = e["contentReference"].lstrip("#")
            rec["t"] = [ref]
            rec["ref"] = ref
        else:
            base_path = e.get("base", {}).get("path", path)
            rec["t"] = [type_code(t, base_path) for t in e.get("type", [])]
            profiles = [p for t in e.get("type", []) for p in t.get("profile", [])]
            targets = [p for t in e.get("type", []) for p in t.get("targetProfile", [])]
            if profiles:
                rec["p"] = short_names(profiles)
            if targets:
                rec["tp"] = short_names(targets)
        binding = e.get("binding") or {}
        if binding.get("valueSet"):
            rec["b"] = [binding["strength"], binding["valueSet"].split("|")[0]]
        tables[parent]["elements"].append(rec)
    return tables


def primitive_info(sd: JsonObj) -> JsonObj:
    name = sd["type"]
    value = next(e for e in sd["snapshot"]["element"] if e["path"] == f"{name}.value")
    regex = next(
        (x["valueString"] for x in value["type"][0].get("extension", []) if x["url"] == REGEX_EXT),
        None,
    )
    if name == "boolean":
        json_kind = "boolean"
    elif name in INTEGER_TYPES:
        json_kind = "integer"
    elif name == "decimal":
        json_kind = "number"
    else:
        json_kind = "string"
    info: JsonObj = {"json": json_kind}
    # Regexes of non-string kinds describe the XML lexical form; the JSON kind says it all.
    if regex and json_kind == "string":
        info["regex"] = regex
    if value.get("maxLength"):
        info["maxLength"] = value["maxLength"]
    return info


class Expander:
    """Expands value sets from the package alone; `None` with a reason when that is impossible."""

    def __init__(self, value_sets: list[JsonObj], code_systems: list[JsonObj]) -> None:
        self.value_sets = {v["url"]: v for v in value_sets}
        self.code_systems = {c["url"]: c for c in code_systems}
        self.memo: dict[str, dict[str, set[str]] | str] = {}

    def expand(self, url: str, stack: tuple[str, ...] = ()) -> dict[str, set[str]] | str:
        url = url.split("|")[0]
        if url in self.memo:
            return self.memo[url]
        if url in stack:
            return f"circular import of {url}"
        result = self._expand(url, (*stack, url))
        self.memo[url] = result
        return result

    def _expand(self, url: str, stack: tuple[str, ...]) -> dict[str, set[str]] | str:
        vs = self.value_sets.get(url)
        if vs is None:
            return "value set not in the package"
        compose = vs.get("compose")
        if not compose:
            return "value set has no compose"
        codes: dict[str, set[str]] = {}
        for inc in compose.get("include", []):
            part = self._include(inc, stack)
            if isinstance(part, str):
                return part
            for system, cs in part.items():
                codes.setdefault(system, set()).update(cs)
        for exc in compose.get("exclude", []):
            part = self._include(exc, stack)
            if isinstance(part, str):
                return f"exclude: {part}"
            for system, cs in part.items():
                codes.get(system, set()).difference_update(cs)
        return codes

    def _include(self, inc: JsonObj, stack: tuple[str, ...]) -> dict[str, set[str]] | str:
        selected: dict[str, set[str]] | None = None
        system = inc.get("system")
        if system:
            if inc.get("filter"):
                return f"filter on {system}"
            if inc.get("concept"):
                selected = {system: {c["code"] for c in inc["concept"]}}
            else:
                cs = self.code_systems.get(system)
                if cs is None:
                    return f"code system {system} not in the package"
                if cs.get("content") != "complete":
                    return f"code system {system} content is {cs.get('content')}"
                selected = {system: set(all_codes(cs.get("concept", [])))}
        for imported in inc.get("valueSet", []):
            other = self.expand(imported, stack)
            if isinstance(other, str):
                return f"{imported}: {other}"
            if selected is None:
                selected = {s: set(c) for s, c in other.items()}
            else:  # an include with a system and value sets is their intersection
                selected = {s: c & other.get(s, set()) for s, c in selected.items()}
        return selected or {}


def all_codes(concepts: list[JsonObj]) -> Iterable[str]:
    for c in concepts:
        yield c["code"]
        yield from all_codes(c.get("concept", []))


def generate(package: Path) -> JsonObj:
    pkg = load_package(package)
    sds = sorted(
        (sd for sd in pkg["StructureDefinition"] if is_base_definition(sd)), key=lambda s: s["type"]
    )
    types: dict[str, JsonObj] = {}
    primitives: dict[str, JsonObj] = {}
    for sd in sds:
        types.update(build_tables(sd))
        if sd["kind"] == "primitive-type":
            primitives[sd["type"]] = primitive_info(sd)
    expander = Expander(pkg["ValueSet"], pkg["CodeSystem"])
    value_sets: dict[str, dict[str, list[str]]] = {}
    skipped: dict[str, JsonObj] = {}
    for tname, table in types.items():
        for rec in table["elements"]:
            b = rec.get("b")
            if not b or b[0] != "required" or not EXPANDED_TYPES.intersection(rec["t"]):
                continue
            url = b[1]
            codes = expander.expand(url)
            if isinstance(codes, str):
                entry = skipped.setdefault(url, {"valueSet": url, "reason": codes, "elements": []})
                entry["elements"].append(f"{tname}.{rec['n']}")
            else:
                value_sets[url] = {s: sorted(c) for s, c in sorted(codes.items())}
    return {
        "fhirVersion": "4.0.1",
        "source": package.name,
        "types": types,
        "primitives": primitives,
        "valueSets": dict(sorted(value_sets.items())),
        "skippedBindings": sorted(skipped.values(), key=lambda s: s["valueSet"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--package", type=Path, default=DEFAULT_PACKAGE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    table = generate(args.package)
    raw = json.dumps(table, separators=(",", ":"), sort_keys=False).encode()
    target: Path = args.out / "structures.json.gz"
    # mtime=0 keeps the output byte-identical across runs, so regenerating shows no git diff.
    target.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    print(
        f"{target.name}: {len(table['types'])} tables, {len(table['primitives'])} primitives, "
        f"{len(table['valueSets'])} value sets, {len(table['skippedBindings'])} skipped bindings, "
        f"{len(raw)} bytes raw",
        file=sys.stderr,
    )
    for s in table["skippedBindings"]:
        print(
            f"  skipped {s['valueSet']}: {s['reason']} ({', '.join(s['elements'])})",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
