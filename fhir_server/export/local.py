"""`fhir-server export`: a system-level export straight from the store into a folder, with a
progress bar; the same parameters, plan and NDJSON writer as `$export`, no HTTP and no job record.
Writes `<Type>-<n>.ndjson` files and a `manifest.json` (file names relative to the folder).

The manifest of a local export has no kick-off URL to report: its `request` (required by the IG)
is the equivalent command line, `fhir-server export --type ... --out DIR` (store options left
out: a MongoDB URI may hold a password), and `requiresAccessToken` is false (local files)."""

from __future__ import annotations

import shlex
import uuid
from pathlib import Path
from typing import Any

from fhir_server.errors import BadRequest
from fhir_server.export.execute import execute
from fhir_server.export.job import ExportJob
from fhir_server.export.manifest import manifest
from fhir_server.export.ndjson import JobFiles
from fhir_server.export.params import parse_kickoff
from fhir_server.export.plan import export_types
from fhir_server.fhir import jsonio
from fhir_server.fhir.dates import now_us
from fhir_server.interactions.conditional import search_context
from fhir_server.interactions.context import Services

LOCAL_BASE = "http://localhost/fhir"


_FLAGS = {
    "_type": "--type",
    "_since": "--since",
    "_until": "--until",
    "_typeFilter": "--type-filter",
}


def cli_request(pairs: list[tuple[str, str]], out: Path) -> str:
    """The manifest's `request` for a local export: the command line that asks for it."""
    words = ["fhir-server", "export"]
    for name, value in pairs:
        words += [_FLAGS.get(name, f"--{name}"), value]
    return shlex.join([*words, "--out", str(out)])


async def export_to_folder(
    services: Services,
    out: Path,
    pairs: list[tuple[str, str]],
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Export into `out` (created; must not hold NDJSON files already); returns the manifest."""
    if out.exists() and any(out.glob("*.ndjson")):
        raise BadRequest(f"{out} already holds .ndjson files; choose an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    params = parse_kickoff("system", pairs, lenient=False,
                           search=search_context(services, LOCAL_BASE))  # fmt: skip
    job = ExportJob(
        id=uuid.uuid4().hex,
        level="system",
        request=cli_request(pairs, out),
        base_url=LOCAL_BASE,
        params=params,
        created=now_us(),
    )
    files = JobFiles(out, job, services.settings.export_lines_per_file)
    total = 0
    for rtype in export_types("system", params, services.resource_types):
        total += await services.storage.count(rtype)

    async def checkpoint(_: ExportJob) -> bool:
        return True

    from tqdm import tqdm

    with tqdm(total=total, unit=" resources", desc="exporting", disable=not progress) as bar:
        await execute(services, job, files, checkpoint,
                      page_size=services.settings.export_page_size, settle_s=0.0,
                      progress=bar.update)  # fmt: skip
    doc = manifest(job, "", requires_access_token=False)
    for entry in [*doc["output"], *doc["error"]]:
        entry["url"] = entry["url"].rsplit("/", 1)[-1]
    (out / "manifest.json").write_bytes(jsonio.dumps(doc))
    return doc


async def run_cli(args: Any, settings: Any) -> int:
    """The `fhir-server export` command (arguments from fhir_server/cli.py)."""
    import sys

    from fhir_server.app import build_services

    pairs: list[tuple[str, str]] = [("_type", t) for t in args.types or []]
    pairs += [(k, v) for k, v in (("_since", args.since), ("_until", args.until)) if v]
    pairs += [("_typeFilter", f) for f in args.type_filters or []]
    services = build_services(settings)
    await services.storage.open()
    try:
        doc = await export_to_folder(services, args.out, pairs)
    except BadRequest as err:
        print(f"export: {err.diagnostics}", file=sys.stderr)
        return 2
    finally:
        await services.storage.close()
    for entry in doc["output"]:
        print(f"  {entry['url']}: {entry['count']} {entry['type']}")
    print(f"exported {sum(e['count'] for e in doc['output'])} resources to {args.out} "
          f"(transactionTime {doc['transactionTime']}; see manifest.json)")  # fmt: skip
    return 0
