"""Write fhir_server/fhir/definitions/resource_types.json from the official R4 core package.

Usage: python tools/gen_resource_types.py PATH/TO/hl7.fhir.r4.core-4.0.1.tgz
Lists every concrete R4 resource type and whether the R4B models of fhir.resources can validate it.
"""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "fhir_server/fhir/definitions/resource_types.json"


def _top_level_elements(sd: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Top-level element names flagged isSummary, and those with min >= 1 (JSON names)."""
    summary: list[str] = []
    required: list[str] = []
    rtype = sd["type"]
    for el in sd["snapshot"]["element"]:
        path: str = el["path"]
        parts = path.split(".")
        if len(parts) != 2 or parts[0] != rtype:
            continue
        name = parts[1]
        if name.endswith("[x]"):
            stem = name[:-3]
            names = [stem + t["code"][0].upper() + t["code"][1:] for t in el.get("type", [])]
        else:
            names = [name]
        if el.get("isSummary"):
            summary.extend(names)
        if el.get("min", 0) >= 1:
            required.extend(names)
    return summary, required


def main(package: str) -> None:
    from fhir.resources.R4B import get_fhir_model_class

    types: list[dict[str, object]] = []
    with tarfile.open(package) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if not name.startswith("StructureDefinition-"):
                continue
            f = tar.extractfile(member)
            assert f is not None
            sd = json.load(f)
            if (
                sd.get("kind") == "resource"
                and not sd.get("abstract")
                and sd.get("derivation") == "specialization"
            ):
                rtype = sd["type"]
                try:
                    get_fhir_model_class(rtype)
                    has_model = True
                except (KeyError, ValueError, AttributeError, ImportError):
                    has_model = False
                summary, required = _top_level_elements(sd)
                types.append(
                    {
                        "type": rtype,
                        "r4b_model": has_model,
                        "summary": summary,
                        "required": required,
                    }
                )
    types.sort(key=lambda t: str(t["type"]))
    OUT.write_text(json.dumps(types, separators=(",", ":")) + "\n")
    print(f"{len(types)} resource types, {sum(1 for t in types if t['r4b_model'])} with R4B models")


if __name__ == "__main__":
    main(sys.argv[1])
