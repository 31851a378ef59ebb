"""The markdown summary of a run, and the targets it is held against."""

from __future__ import annotations

from typing import Any

TARGETS: dict[str, dict[str, Any]] = {
    "ingest": {"figure": "resources_per_s", "min": 2000, "text": ">= 2,000 resources/s"},
    "read": {"figure": "ratio", "min": 0.5, "text": ">= 50 % of the ceiling"},
    "crud": {"figure": "p50_ms", "max": 10.0, "text": "p50 <= 10 ms at 16 clients"},
    "rpm": {"figure": "requests_per_s", "text": "(no target; reported)"},
}


def verdict(name: str, out: dict[str, Any]) -> str:
    t = TARGETS.get(name, {})
    value = out.get(t.get("figure", ""))
    if not isinstance(value, int | float):
        return "n/a"
    if "min" in t:
        return "met" if value >= t["min"] else "MISSED"
    if "max" in t:
        return "met" if value <= t["max"] else "MISSED"
    return "-"


def _n(v: Any, digits: int = 1) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def _pct(ratio: Any) -> str:
    return f"{ratio * 100:.1f} %" if isinstance(ratio, float) else "n/a"


def _quarters(out: dict[str, Any]) -> str:
    q = out.get("resources_per_s_by_quarter") or []
    if len(q) < 4 or out.get("bundles_ok", 0) < 20:  # too few bundles for the slices to mean much
        return ""
    return "; by quarter of the run: " + " / ".join(f"{v:,.0f}" for v in q)


def headline(name: str, out: dict[str, Any]) -> str:
    if "skipped" in out:
        return f"skipped: {out['skipped']}"
    if "failed" in out:
        return f"FAILED: {out['failed']}"
    if name == "ingest":
        return (
            f"{_n(out['resources_per_s'])} resources/s, {_n(out['bundles_per_s'], 2)} bundles/s "
            f"({_n(out['resources'])} resources in {_n(out['bundles_ok'])} bundles, "
            f"{out['bundles_refused']} refused, {_n(out['seconds'], 1)} s; "
            f"{_n(out.get('resources_per_server_cpu_s'))} per server CPU-second)" + _quarters(out)
        )
    if name in ("rpm", "crud"):
        return (
            f"{_n(out['requests_per_s'])} requests/s, p50 {_n(out['p50_ms'], 2)} ms, "
            f"p95 {_n(out['p95_ms'], 2)} ms, p99 {_n(out['p99_ms'], 2)} ms "
            f"({_n(out['requests_ok'])} ok, {out['errors']['count']} errors)"
        )
    if name == "read":
        pct = _pct(out.get("ratio"))
        return (
            f"/fhir {_n(out['fhir_requests_per_s'])} req/s vs ceiling "
            f"{_n(out['ceiling_requests_per_s'])} req/s = {pct} ({out['generator']}, "
            f"{out['errors']} errors; per server CPU-second: {_pct(out.get('cpu_ratio'))})"
        )
    return ""


def _usage(out: dict[str, Any]) -> str:
    u = out.get("usage")
    if not isinstance(u, dict):
        runs = out.get("runs", {}).get("fhir") or []
        u = runs[0].get("usage") if runs else None
    if not isinstance(u, dict):
        return ""
    return (
        f"server {u['server_cores_busy']}, generator {u['client_cores_busy']}, "
        f"other processes {u.get('other_cores_busy', '?')}"
    )


def markdown(doc: dict[str, Any], json_name: str) -> str:
    m = doc["machine"]
    g = doc["load_generator"]
    w = doc["workloads"]
    lines = [
        f"# Benchmark `{doc['size']}`, {doc['started_utc']}",
        "",
        f"- command: `{doc['command']}`",
        f"- machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['mem_gib']} GiB, load average at "
        f"start {m['loadavg_at_start']}, at end {m.get('loadavg_at_end')}; Python {m['python']}",
        f"- commit: `{(m['git_commit'] or 'unknown')[:12]}` "
        f"({m['git_uncommitted_paths']} uncommitted paths in the tree)",
        f"- server: {w['server']['workers']} uvicorn worker(s), fresh temp data dir, "
        f"access log off; generator: {g['process']} on {g['event_loop']}, "
        f"read workload via {g['read_workload']}",
        f"- full figures: `{json_name}`",
        "",
        "| workload | result | target | verdict | cores busy (of the machine's 2) |",
        "|---|---|---|---|---|",
    ]
    for name in ("ingest", "rpm", "crud", "read"):
        if name in w:
            out = w[name]
            lines.append(
                f"| {name} | {headline(name, out)} | {TARGETS[name]['text']} | "
                f"{verdict(name, out)} | {_usage(out)} |"
            )
    other = [
        u["other_cores_busy"]
        for res in w.values()
        if isinstance(res, dict) and isinstance(u := res.get("usage"), dict)
    ]
    if other and max(other) > 0.3:
        lines += [
            "",
            f"**Shared machine:** other processes kept up to {max(other)} of the 2 cores busy "
            "during this run; its figures are lower than on an idle machine.",
        ]
    problems = _problems(w)
    if problems:
        lines += ["", "## Errors and refusals", "", *problems]
    return "\n".join(lines) + "\n"


def _problems(w: dict[str, Any]) -> list[str]:
    out: list[str] = []
    ing = w.get("ingest", {})
    for r in ing.get("prelude", {}).get("refused", []) + ing.get("refused", []):
        out.append(
            f"- ingest refused `{r['bundle']}` (HTTP {r['status']}, {r['resources']} resources): "
            f"{r['diagnostics']}"
        )
    if ing.get("entries_not_2xx"):
        out.append(f"- ingest: {ing['entries_not_2xx']} transaction entries were not 2xx")
    for name in ("rpm", "crud"):
        errs = w.get(name, {}).get("errors", {})
        for kind, count in errs.get("kinds", {}).items():
            out.append(f"- {name}: {count} x {kind}")
    if w.get("read", {}).get("errors"):
        out.append(f"- read: {w['read']['errors']} errors (see the JSON)")
    for name, res in w.items():
        if isinstance(res, dict) and "failed" in res:
            out.append(f"- {name} FAILED: {res['failed']}")
    return out
