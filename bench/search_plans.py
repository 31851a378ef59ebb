"""Time a search mix in-process and record the SQL plans behind it (evidence that it runs on
indexes). Writes bench/results/search-plans-<label>.md.

Usage: python -m bench.search_plans DATA_DIR LABEL   (a store built by bench.synthetic_rpm)
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl

from fhir_server.app import build_services
from fhir_server.interactions.context import FhirRequest
from fhir_server.interactions.router import dispatch
from fhir_server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from explain_search import explain, search_context  # noqa: E402

MIX = [
    "Observation?patient=p17",
    "Observation?patient=p17&code=http://loinc.org|8867-4",
    "Observation?patient=p17&code=8867-4&_sort=-date&_count=1",
    "Observation?patient=p17&date=ge2025-03-01&date=lt2025-04-01",
    "Observation?device=Device/d5&date=ge2025-06-01&date=lt2025-06-15",
    "Observation?code=8867-4",
    "Observation?code=8867-4&_total=accurate",
    "Observation?date=ge2025-06-01&date=lt2025-06-02",
    "Observation?subject:Patient.name=Fam12&code=8867-4",
    "Observation?patient=p17&_include=Observation:subject",
    "Patient?_id=p17&_revinclude=Device:patient",
    "Observation?value-quantity=gt99|http://unitsofmeasure.org|%25",
    "Observation?_lastUpdated=gt2020-01-01&_count=10",
    "Patient?name=fam1&_count=10",
    "Observation?combo-code-value-quantity=http://loinc.org|8867-4$gt95",
    "Patient?_has:Observation:patient:code=8310-5&_count=5",
]


async def timings(data_dir: Path) -> list[tuple[str, float, int]]:
    ctx = build_services(Settings(data_dir=data_dir, seed=False, validation_processes=0))
    await ctx.storage.open()
    out = []
    try:
        for q in MIX:
            path, _, qs = q.partition("?")
            req = FhirRequest("GET", path, parse_qsl(qs), {}, None, "http://localhost/fhir")
            await dispatch(ctx, req)
            runs = []
            for _ in range(7):
                start = time.perf_counter()
                resp = await dispatch(ctx, req)
                runs.append((time.perf_counter() - start) * 1000)
            out.append((q, statistics.median(runs), len(resp.body or b"")))
    finally:
        await ctx.storage.close()
    return out


def main() -> None:
    data_dir, label = Path(sys.argv[1]), sys.argv[2]
    conn = sqlite3.connect(data_dir / "fhir.db")
    count = conn.execute("SELECT count(*) FROM resources").fetchone()[0]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout.strip()
    lines = [
        f"# Search mix on {count:,} resources ({label})",
        "",
        f"- commit `{commit}`; store built by `python -m bench.synthetic_rpm DIR N`",
        f"- command: `python -m bench.search_plans DIR {label}`; in-process (no HTTP), "
        "median of 7 runs after one warm-up, one query at a time",
        "",
        "| query | median ms |",
        "|---|---|",
    ]
    for q, ms, _ in asyncio.run(timings(data_dir)):
        cell = q.replace("|", "\\|")  # a bar inside a table cell must be escaped
        lines.append(f"| `{cell}` | {ms:.2f} |")
    lines += ["", "## Plans", ""]
    ctx = search_context()
    for q in MIX:
        lines += explain(conn, ctx, q)
    out = ROOT / "bench" / "results" / f"search-plans-{label}.md"
    out.write_text("\n".join(lines) + "\n")
    print(out)


if __name__ == "__main__":
    main()
