"""Generate fhir_server/fhir/definitions/profiles.json.gz: the profiles the server validates against
out of the box, and the expansions of the value sets they bind.

From the R4 core package: every constraint profile on a resource (vitalsigns, bp, heartrate,
bodyweight, ... and the others the package defines). From US Core 3.1.0: its profiles and
extensions (its copies of the core vital-signs profiles are the same as the core ones). Elements
keep only what the validator reads. Value sets bound (required or extensible) by these profiles and
by the server's own profiles/ are expanded from both packages where that is possible; the others
are listed as skipped (their bindings are not checked).

Usage: python tools/gen_profiles.py [--core PATH] [--us-core PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_server.fhir.profiles.terminology import Expander  # noqa: E402

PACKAGES = ROOT.parent / "shared" / "data" / "fhir-packages"
DEFAULT_CORE = PACKAGES / "hl7.fhir.r4.core-4.0.1.tgz"
DEFAULT_US_CORE = PACKAGES / "hl7.fhir.us.core-3.1.0.tgz"
DEFAULT_OUT = ROOT / "fhir_server" / "fhir" / "definitions" / "profiles.json.gz"
MAX_CODES = 5000

JsonObj = dict[str, Any]
SD_KEYS: tuple[str, ...] = ("resourceType", "url", "version", "name", "title", "status", "kind")
SD_KEYS += ("type", "derivation", "baseDefinition")
ELEMENT_KEYS = ("id", "path", "sliceName", "min", "max", "slicing")


def read_package(path: Path) -> dict[str, list[JsonObj]]:
    out: dict[str, list[JsonObj]] = {"StructureDefinition": [], "ValueSet": [], "CodeSystem": []}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            if not (member.isfile() and name.endswith(".json")):
                continue
            if not name.startswith(("StructureDefinition-", "ValueSet-", "CodeSystem-")):
                continue
            fh = tar.extractfile(member)
            if fh is not None:
                res = json.loads(fh.read())
                if res.get("resourceType") in out:
                    out[res["resourceType"]].append(res)
    return out


def trim_element(e: JsonObj) -> JsonObj:
    out = {k: e[k] for k in ELEMENT_KEYS if k in e}
    for k, v in e.items():
        if k.startswith(("fixed", "pattern")):
            out[k] = v
    if "type" in e:
        out["type"] = [
            {k: t[k] for k in ("code", "profile", "targetProfile") if k in t} for t in e["type"]
        ]
    b = e.get("binding")
    if isinstance(b, dict) and b.get("strength") in ("required", "extensible") and "valueSet" in b:
        out["binding"] = {"strength": b["strength"], "valueSet": b["valueSet"]}
    cs = [
        {k: c[k] for k in ("key", "severity", "human", "expression") if k in c}
        for c in e.get("constraint") or []
        if "expression" in c
    ]
    if cs:
        out["constraint"] = cs
    return out


def trim(sd: JsonObj) -> JsonObj:
    out = {k: sd[k] for k in SD_KEYS if k in sd}
    out["snapshot"] = {"element": [trim_element(e) for e in sd["snapshot"]["element"]]}
    return out


def wanted(sd: JsonObj, us_core: bool) -> bool:
    if sd.get("derivation") != "constraint" or not sd.get("snapshot"):
        return False
    if us_core:
        return "/us/core/" in str(sd.get("url"))
    return sd.get("kind") == "resource"


def bound_value_sets(sds: list[JsonObj]) -> set[str]:
    out: set[str] = set()
    for sd in sds:
        elements = (sd.get("snapshot") or sd.get("differential") or {}).get("element", [])
        for e in elements:
            b = e.get("binding") or {}
            if b.get("strength") in ("required", "extensible") and b.get("valueSet"):
                out.add(str(b["valueSet"]).split("|")[0])
    return out


def generate(core: Path, us_core: Path, profiles_dir: Path) -> JsonObj:
    core_pkg, us_pkg = read_package(core), read_package(us_core)
    sds = [trim(sd) for sd in core_pkg["StructureDefinition"] if wanted(sd, False)]
    sds += [trim(sd) for sd in us_pkg["StructureDefinition"] if wanted(sd, True)]
    sds.sort(key=lambda s: s["url"])
    own = [json.loads(p.read_text()) for p in sorted(profiles_dir.glob("*.json"))]
    expander = Expander(
        core_pkg["ValueSet"] + us_pkg["ValueSet"], core_pkg["CodeSystem"] + us_pkg["CodeSystem"]
    )
    expansions: dict[str, dict[str, list[str]]] = {}
    skipped: dict[str, str] = {}
    own_urls = {r.get("url") for r in own}  # expanded at run time from profiles/ itself
    bound = bound_value_sets(sds + [r for r in own if "differential" in r]) - own_urls
    for url in sorted(bound):
        codes = expander.expand(url)
        if isinstance(codes, str):
            skipped[url] = codes
        elif sum(len(c) for c in codes.values()) > MAX_CODES:
            skipped[url] = f"more than {MAX_CODES} codes"
        else:
            expansions[url] = {s: sorted(c) for s, c in sorted(codes.items())}
    return {
        "sources": [core.name, us_core.name],
        "structureDefinitions": sds,
        "expansions": expansions,
        "skipped": skipped,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--core", type=Path, default=DEFAULT_CORE)
    parser.add_argument("--us-core", type=Path, default=DEFAULT_US_CORE)
    parser.add_argument("--profiles", type=Path, default=ROOT / "profiles")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    data = generate(args.core, args.us_core, args.profiles)
    text = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    args.out.write_bytes(gzip.compress(text, mtime=0))
    print(
        f"{args.out}: {len(data['structureDefinitions'])} profiles, "
        f"{len(data['expansions'])} value sets expanded, {len(data['skipped'])} skipped, "
        f"{len(text):,} bytes raw"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
