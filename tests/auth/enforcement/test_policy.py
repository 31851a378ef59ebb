"""The decision point's pure parts: per (type, letter) access, the OR-of-ANDs to clauses
conversion, the router's letter table, and the scoped storage's completeness."""

from __future__ import annotations

import inspect

from fhir_server.auth.enforce import ALL, Access, Policy, Rule, required, to_cnf
from fhir_server.auth.scoped_storage import ScopedStorage, ScopedTransaction
from fhir_server.search.query import Clause, IdCriterion, TokenCriterion
from fhir_server.storage.base import Storage, Transaction
from tests.auth.enforcement.conftest import VITAL, grant


def test_access_per_context() -> None:
    """SMART.md 1.4 "Who scopes apply to": patient/ confines to the patient in context, user/
    and system/ do not."""
    p = Policy(grant("patient/Observation.rs", "user/Condition.r", patient="p1"))
    assert p.access("Observation", "s") == Access(True, (Rule("p1"),))
    assert p.access("Observation", "c") == Access(False)
    assert p.access("Condition", "r") == ALL
    assert p.access("Condition", "s") == Access(False)
    # Practitioner is not in the Patient compartment: covered, but nothing is reachable.
    assert Policy(grant("patient/*.rs", patient="p1")).access("Practitioner", "r") == Access(True)
    assert Policy(grant("patient/*.rs")).access("Observation", "r") == Access(True)


def test_granular_rules_are_ored_and_widened() -> None:
    """SMART.md 1.8 "Several granular scopes for the same type are OR'ed"; an unrestricted scope
    makes the restricted ones moot."""
    p = Policy(grant(f"user/Observation.rs?category={VITAL}", "user/Observation.s?category=x|y"))
    assert p.access("Observation", "s").rules == (
        Rule(None, (("category", VITAL),)), Rule(None, (("category", "x|y"),)))  # fmt: skip
    wide = Policy(
        grant(f"patient/Observation.rs?category={VITAL}", "system/Observation.s", patient="p1")
    )
    assert wide.access("Observation", "s") == ALL
    assert wide.access("Observation", "r") == Access(True, (Rule("p1", (("category", VITAL),)),))


def test_unrestricted_everywhere() -> None:
    assert Policy(grant("system/*.rs")).unrestricted_everywhere("s")
    assert not Policy(grant("patient/*.rs", patient="p")).unrestricted_everywhere("s")
    assert not Policy(grant("user/*.rs?category=a|b")).unrestricted_everywhere("s")


def test_cnf() -> None:
    """(A and B) or C == (A or C) and (B or C)."""
    a = Clause((TokenCriterion("category", "s", "a"),))
    b = Clause((TokenCriterion("code", "s", "b"),))
    c = Clause((IdCriterion(("x",)),))
    assert to_cnf([(a, b), (c,)]) == (
        Clause((*a.criteria, *c.criteria)), Clause((*b.criteria, *c.criteria)))  # fmt: skip
    assert to_cnf([(a,), ()]) == ()
    assert to_cnf([(a,), (a,)]) == (a,)
    many = [tuple(Clause((IdCriterion((f"{i}-{j}",)),)) for j in range(4)) for i in range(4)]
    assert to_cnf(many) is None  # 4**4 clauses: filtered after the fact instead


def test_required_letters() -> None:
    """SMART.md 1.8 letter table as the router applies it (conditional interactions search too)."""
    assert required("GET", ["Observation"]) == ("Observation", "s")
    assert required("HEAD", ["Observation", "1"]) == ("Observation", "r")
    assert required("POST", ["Observation"]) == ("Observation", "c")
    assert required("POST", ["Observation"], conditional_create=True) == ("Observation", "cs")
    assert required("POST", ["Observation", "_search"]) == ("Observation", "s")
    assert required("GET", ["Observation", "_history"]) == ("Observation", "s")
    assert required("GET", ["Observation", "1", "_history"]) == ("Observation", "r")
    assert required("GET", ["Observation", "1", "_history", "2"]) == ("Observation", "r")
    assert required("PUT", ["Observation", "1"]) == ("Observation", "u")
    assert required("PUT", ["Observation"]) == ("Observation", "us")
    assert required("PATCH", ["Observation", "1"]) == ("Observation", "u")
    assert required("DELETE", ["Observation", "1"]) == ("Observation", "d")
    assert required("DELETE", ["Observation"]) == ("Observation", "ds")
    assert required("GET", ["Patient", "1", "Observation"]) == ("Observation", "s")
    assert required("GET", ["Patient", "1", "$everything"]) is None
    assert required("POST", ["Observation", "$validate"]) is None


def _members(protocol: type) -> set[str]:
    return {n for n, v in vars(protocol).items() if not n.startswith("_") and callable(v)}


def test_scoped_storage_implements_every_primitive() -> None:
    """ARCHITECTURE.md "One authorization decision point": a storage primitive added to the
    contract must be handled by the scoped view (no attribute forwarding could bypass it)."""
    for protocol, scoped in ((Storage, ScopedStorage), (Transaction, ScopedTransaction)):
        missing = {n for n in _members(protocol) if n not in vars(scoped)}
        assert not missing, f"{scoped.__name__} must enforce {sorted(missing)}"
        assert not hasattr(scoped, "__getattr__")
        for name in _members(protocol):
            assert inspect.iscoroutinefunction(getattr(protocol, name)) == (
                inspect.iscoroutinefunction(getattr(scoped, name))), name  # fmt: skip
