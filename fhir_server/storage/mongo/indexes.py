"""The MongoDB engine's indexes, created at start-up with `createIndexes` (idempotent: an index that
exists with the same keys and options is left alone, so every server process may run it).

`resources` (current versions, `_id` = `Type/id`):
    read, conditional interactions and `_id` search     the `_id` index
    type scans in creation order, snapshots, paging     (t, pk), (pk)
    _lastUpdated                                        (t, u)
    _id across types                                    (i)
    token                                               (t, tk.p, tk.c, tk.s), (t, tk.p, tk.s),
                                                        (t, tk.p, tk.x)
    string                                              (t, st.p, st.n), (t, st.p, st.e)
    date                                                (t, dt.p, dt.lo, dt.hi), (t, dt.p, dt.hi)
    number, quantity                                    (t, nm.p, nm.v), (t, qt.p, qt.v)
    reference (chains, _has, _revinclude)               (t, rf.p, rf.ri, rf.rt), (t, rf.p, rf.url)
    uri                                                 (t, ur.p, ur.u)
    composite                                           (t, cp.p, cp.c1, cp.c2)
    _text / _content word prefixes                      (t, wn), (t, wc)
    patient compartment (the shard key)                 (pc)
`history` (one document per version, `_id` = `Type/id/version`, which makes a version unique):
    instance / type / system history, _since, _at        (t, i, sq), (t, sq), (sq)
`records` (internal documents: jobs, an outbox)          (kd, ky) unique
`leases`: one document per lease, by `_id`
"""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, IndexModel


def _ix(*fields: str, name: str) -> IndexModel:
    return IndexModel([(f, ASCENDING) for f in fields], name=name)


RESOURCE_INDEXES = [
    _ix("t", "pk", name="type_pk"),
    _ix("pk", name="pk"),
    _ix("t", "u", name="type_updated"),
    _ix("i", name="id"),
    _ix("t", "tk.p", "tk.c", "tk.s", name="token_code"),
    _ix("t", "tk.p", "tk.s", name="token_system"),
    _ix("t", "tk.p", "tk.x", name="token_text"),
    _ix("t", "st.p", "st.n", name="string_norm"),
    _ix("t", "st.p", "st.e", name="string_exact"),
    _ix("t", "dt.p", "dt.lo", "dt.hi", name="date_low"),
    _ix("t", "dt.p", "dt.hi", name="date_high"),
    _ix("t", "nm.p", "nm.v", name="number"),
    _ix("t", "qt.p", "qt.v", name="quantity"),
    _ix("t", "rf.p", "rf.ri", "rf.rt", name="reference"),
    _ix("t", "rf.p", "rf.url", name="reference_url"),
    _ix("t", "ur.p", "ur.u", name="uri"),
    _ix("t", "cp.p", "cp.c1", "cp.c2", name="composite"),
    _ix("t", "wn", name="text_narrative"),
    _ix("t", "wc", name="text_content"),
    _ix("pc", name="patient_compartment"),
]

HISTORY_INDEXES = [
    IndexModel([("t", ASCENDING), ("i", ASCENDING), ("sq", DESCENDING)], name="instance"),
    IndexModel([("t", ASCENDING), ("sq", DESCENDING)], name="type"),
    IndexModel([("sq", DESCENDING)], name="system"),
]

RECORD_INDEXES = [
    IndexModel([("kd", ASCENDING), ("ky", ASCENDING)], name="kind_key", unique=True),
]
