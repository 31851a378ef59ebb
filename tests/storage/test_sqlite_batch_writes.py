"""The SQLite engine stores a flush of many writes with a few JSON-array statements
(`rows.apply_writes`); it must leave exactly the rows, row ids and value types that storing the
writes one by one (`rows.apply_write`) leaves."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from fhir_server.fhir import jsonio
from fhir_server.fhir.fulltext import fulltext_values
from fhir_server.fhir.index_values import NumberValue, QuantityValue
from fhir_server.fhir.searchparams import load_default
from fhir_server.storage.base import StoredResource, VersionConflict, Write
from fhir_server.storage.sqlite.rows import apply_write, apply_writes
from fhir_server.storage.sqlite.schema import DDL, FTS_DDL, INDEX_TABLES

SEED = Path(__file__).resolve().parents[2] / "seed_data"
REGISTRY = load_default()
Apply = Callable[[sqlite3.Connection, Sequence[Write]], None]


def _one_by_one(conn: sqlite3.Connection, writes: Sequence[Write]) -> None:
    for w in writes:
        apply_write(conn, w)


def _write(resource: dict[str, Any], version: int, method: str, deleted: bool = False) -> Write:
    rtype, id = resource["resourceType"], resource["id"]
    body = b"" if deleted else jsonio.dumps(resource)
    index = [] if deleted else [*REGISTRY.extractor(rtype)(resource), *fulltext_values(resource)]
    stored = StoredResource(rtype, id, version, 1_700_000_000_000_000 + version, deleted, body)
    return Write(stored, index, version - 1, method)  # type: ignore[arg-type]


def _batches() -> list[list[Write]]:
    """The seed Bundles' resources as creates, then updates, deletes and new ones mixed."""
    created: list[dict[str, Any]] = []
    batches: list[list[Write]] = []
    for path in sorted(SEED.glob("*.json"))[:4]:
        bundle = jsonio.loads(path.read_bytes())
        batch = []
        for n, entry in enumerate(bundle["entry"]):
            resource = dict(entry["resource"])
            resource.setdefault("id", f"{path.stem}-{n}")
            created.append(resource)
            batch.append(_write(resource, 1, "POST"))
        batches.append(batch)
    mixed = [
        _write(r, 2, "DELETE", deleted=True) if k % 3 == 0 else _write(r, 2, "PUT")
        for k, r in enumerate(created[:60])
    ]
    mixed.append(_write({"resourceType": "Patient", "id": "late", "gender": "other"}, 1, "POST"))
    batches.append(mixed)
    batches.append([_write(r, 3, "PUT") for r in created[1:60:3]])  # recreate the deleted
    batches.append([_write(r, 4, "DELETE", deleted=True) for r in created[1:60:3]])  # no bodies
    return batches


def _store(tmp_path: Path, name: str, apply: Apply, batches: list[list[Write]]) -> Any:
    conn = sqlite3.connect(tmp_path / f"{name}.db", isolation_level=None)
    conn.executescript(DDL)
    conn.executescript(FTS_DDL)
    for batch in batches:
        conn.execute("BEGIN")
        apply(conn, batch)
        conn.execute("COMMIT")
    return conn


def _dump(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table in ("history", "resources", *INDEX_TABLES):
        rows = conn.execute(f"SELECT rowid, * FROM {table} ORDER BY rowid").fetchall()
        out[table] = [(*row, *(type(v).__name__ for v in row)) for row in rows]
    out["fts"] = conn.execute("SELECT rowid, narrative, content FROM fts ORDER BY rowid").fetchall()
    return out


def test_batch_leaves_the_rows_one_by_one_leaves(tmp_path: Path) -> None:
    batches = _batches()
    expected = _dump(_store(tmp_path, "single", _one_by_one, batches))
    got = _dump(_store(tmp_path, "batch", apply_writes, batches))
    assert expected["idx_token"] and expected["idx_reference"] and expected["fts"]
    for table, rows in expected.items():
        assert got[table] == rows, table


def test_batch_binds_values_json_cannot_hold(tmp_path: Path) -> None:
    """JSON has no infinity: rows holding one go through bound parameters, as before."""
    a = _write({"resourceType": "Observation", "id": "a", "status": "final"}, 1, "POST")
    b = _write({"resourceType": "Observation", "id": "b", "status": "final"}, 1, "POST")
    huge = [QuantityValue("value-quantity", float("inf"), None, None, None)]
    writes = [
        Write(a.resource, [*a.index, *huge], 0, "POST"),
        Write(b.resource, [*b.index, NumberValue("value-quantity", -float("inf"))], 0, "POST"),
    ]
    expected = _dump(_store(tmp_path, "single", _one_by_one, [writes]))
    got = _dump(_store(tmp_path, "batch", apply_writes, [writes]))
    assert got == expected
    assert expected["idx_quantity"][0][4] == float("inf")


@pytest.mark.parametrize("apply", [_one_by_one, apply_writes])
def test_version_conflict_in_a_batch(tmp_path: Path, apply: Apply) -> None:
    first = _write({"resourceType": "Patient", "id": "p", "gender": "male"}, 1, "POST")
    conn = _store(tmp_path, "conflict", apply, [[first]])
    other = _write({"resourceType": "Patient", "id": "q"}, 1, "POST")
    stale = Write(first.resource, first.index, 0, "PUT")  # expects no current version
    conn.execute("BEGIN")
    with pytest.raises(VersionConflict, match="Patient/p"):
        apply(conn, [other, stale])
    conn.execute("ROLLBACK")
