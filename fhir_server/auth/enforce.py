"""The one authorization decision point: what an AccessGrant lets a request see and change.

Design: enforcement sits on the storage, not in each interaction
------------------------------------------------------------------
After the HTTP layer has authenticated a request (`services.authenticate` -> `AccessGrant`), it
calls `scoped_services(services, grant, base_url)`: a per-request copy of `Services` whose
`storage` is a `ScopedStorage` (fhir_server/auth/scoped_storage.py) wrapping the real engine.
Every interaction, every entry of a batch or transaction (they are dispatched with the same
`Services`), every `_include`/`_revinclude`d resource, every history entry and every operation
(handlers receive the same `Services` and reach data only through `ctx.storage`) therefore passes
through the same checks, and an operation added later ($everything, $export, $lastn, ...) is
enforced without code of its own.

Who answers 403: the router calls `require(ctx, required(...))` before an interaction runs, so an
interaction on a type (or with a letter) no scope grants is refused before anything else happens,
with the same `Policy.access` the storage consults. The storage view itself answers as if what the
grant does not reach did not exist (reads None, searches leave it out), so that operations which
gather many types ($everything) return what is granted instead of failing; it refuses (403) writes,
and system-wide searches and history when no scope grants `s` on any type.

Rules (SMART App Launch 2.2, scopes-and-launch-context.html):

* Each storage primitive maps to a permission letter: `read`/`vread`/instance `history` -> r;
  `search` and type/system `history` -> s; a write's method: POST -> c, PUT/PATCH -> u (also
  update-as-create), DELETE -> d. `_include`d resources need r or s on their type.
* No scope grants the letter on the type -> 403 Forbidden (see "Who answers 403" above).
* `user/` and `system/` scopes: type and letter only. `patient/` scopes confine to the Patient
  compartment of `grant.patient` (official CompartmentDefinition: the compartment's search
  parameters, plus the Patient itself by id). Types that are not in the Patient compartment hold no
  resource a `patient/` scope can reach; a `patient/` scope without a patient in context reaches
  nothing.
* Granular scopes (`patient/Observation.rs?category=...|vital-signs`) add their query's criteria;
  several scopes for one type are ORed (converted to the AND-of-ORs clauses a `SearchQuery` holds).
* A search whose types share the same criteria (one type; or a compartment's types linked by the
  same parameters, as $everything searches them) gets them added to the query, so paging and
  `_total` stay exact. Other multi-type searches, includes and history are filtered after the fact
  by asking the engine which of the returned ids match (`_id` + criteria, answered from the
  indexes; a short page is topped up from the next ones); their totals are dropped.
* Reads of a resource outside what the grant reaches answer 404 (the same as a resource that does
  not exist), so existence does not leak; a deleted resource is only reported as such (410) to
  unrestricted grants. vread and instance history require the *current* version to be reachable.
* Writes: the version replaced (update, patch, delete) must be reachable with the write's letter,
  and the version written (create, update, patch) must match the letter's rules, checked inside the
  storage transaction after the write, so a refused write (403) rolls back with everything else in
  that transaction. An update, patch or delete of a resource outside the grant's reach answers
  404 (as a read does); a conditional delete matching nothing reachable answers 204 (R4).
* The signed-in user's own resource (`grant.fhir_user`, when `fhirUser` was granted) can always
  be read (read, vread, instance history): SMART's id_token names it for the app to read.
* Granular scope queries that do not parse (unknown parameter, bad value) match nothing.
* Chained parameters (`subject:Patient.name=...`) and `_has` (`_has:Observation:patient:code=...`)
  test resources of another type, so they are a search of that type too: `Enforcer.
  restrict_links` (called by every storage search) refuses (403) a chain or `_has` that reaches
  only types no scope grants `s` on, drops the chain's target types no scope covers, and adds
  the grant's compartment and granular rules for `s` on the reached type to the link's own
  criteria, so a link never tests a resource the grant could not find by searching its type.
  `_list=id` reads the List: it needs `r` or `s` on List (else 403) and matches nothing when
  that List is outside the grant's reach.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from fhir_server.auth.grant import AccessGrant
from fhir_server.auth.scoped_storage import ScopedStorage, Searcher, reachable_ids
from fhir_server.auth.scopes import LETTERS, ResourceScope, parse_scopes
from fhir_server.errors import FhirError, Forbidden
from fhir_server.fhir.compartments import compartment_params
from fhir_server.interactions.conditional import search_context
from fhir_server.interactions.context import Services
from fhir_server.interactions.terminology import resolve_terminology
from fhir_server.search.parse import parse_search
from fhir_server.search.query import (
    ChainCriterion,
    Clause,
    Criterion,
    HasCriterion,
    IdCriterion,
    ListCriterion,
    ReferenceCriterion,
)

__all__ = [
    "Access",
    "Enforcer",
    "Policy",
    "Rule",
    "forbidden_link",
    "in_patient_compartment",
    "require",
    "required",
    "scoped_services",
]

# Past this many OR-of-AND clauses a search is filtered after the fact instead.
MAX_CNF_CLAUSES = 64
LETTER_NAMES = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


@dataclass(frozen=True, slots=True)
class Rule:
    """One way a resource can be reached: in `patient`'s compartment (if set) and matching
    `params` (a granular scope's query). Rule() reaches everything."""

    patient: str | None = None
    params: tuple[tuple[str, str], ...] = ()

    @property
    def unrestricted(self) -> bool:
        return self.patient is None and not self.params


@dataclass(frozen=True, slots=True)
class Access:
    """What a grant allows for one (type, letter): `covered` says some scope grants the letter on
    the type at all (otherwise 403); `rules` are ORed (none: nothing can be reached)."""

    covered: bool
    rules: tuple[Rule, ...] = ()

    @property
    def unrestricted(self) -> bool:
        return any(r.unrestricted for r in self.rules)


DENIED = Access(False)
ALL = Access(True, (Rule(),))


def in_patient_compartment(resource_type: str) -> bool:
    """Whether resources of this type can be in a Patient compartment."""
    return resource_type == "Patient" or bool(compartment_params("Patient", resource_type))


def _rule(scope: ResourceScope, grant: AccessGrant, resource_type: str) -> Rule | None:
    if scope.context != "patient":
        return Rule(None, scope.params)
    if grant.patient is None or not in_patient_compartment(resource_type):
        return None
    return Rule(grant.patient, scope.params)


class Policy:
    """The grant's scopes as decisions per (resource type, letter). Pure: no I/O."""

    def __init__(self, grant: AccessGrant) -> None:
        self.grant = grant
        self.scopes = parse_scopes(grant.scopes)
        self._cache: dict[tuple[str, str], Access] = {}

    def access(self, resource_type: str, letter: str) -> Access:
        key = (resource_type, letter)
        found = self._cache.get(key)
        if found is not None:
            return found
        covered = False
        rules: list[Rule] = []
        for scope in self.scopes:
            if not scope.covers(resource_type, letter):
                continue
            covered = True
            rule = _rule(scope, self.grant, resource_type)
            if rule is not None and rule not in rules:
                rules.append(rule)
        access = Access(covered, tuple(rules))
        if access.unrestricted:
            access = ALL
        self._cache[key] = access
        return access

    def access_any(self, resource_type: str, letters: Iterable[str]) -> Access:
        """The union of the access for several letters (a resource reachable by any of them)."""
        covered = False
        rules: list[Rule] = []
        for letter in letters:
            a = self.access(resource_type, letter)
            covered = covered or a.covered
            rules += [r for r in a.rules if r not in rules]
        access = Access(covered, tuple(rules))
        return ALL if access.unrestricted else access

    def unrestricted_everywhere(self, letters: str) -> bool:
        """Some scope grants one of `letters` on every type with no restriction (`system/*.rs`)."""
        return any(
            s.resource_type == "*"
            and s.context != "patient"
            and not s.params
            and any(x in s.letters for x in letters)
            for s in self.scopes
        )

    def reachable_types(self, letters: str, types: Iterable[str]) -> tuple[str, ...]:
        """The types among `types` where one of `letters` reaches at least something."""
        return tuple(sorted(t for t in types if self.access_any(t, letters).rules))

    def is_fhir_user(self, resource_type: str, id: str) -> bool:
        """Whether this is the signed-in user's own resource (`fhirUser` granted): SMART apps
        read it (Inferno reads the id_token's fhirUser with the access token)."""
        user = self.grant.fhir_user
        if user is None or "fhirUser" not in self.grant.scopes:
            return False
        return user.rstrip("/").split("/")[-2:] == [resource_type, id]

    def covers_some_type(self, letters: str) -> bool:
        return any(x in s.letters for s in self.scopes for x in letters)


def scope_family(policy: Policy | None) -> str:
    """The context (patient, user, system) of the grant's scopes, for hints naming a scope the
    token could have had: that of its resource scopes, else patient when a patient is in
    context, system without a user, user otherwise."""
    if policy is None:
        return "user"
    contexts = [s.context for s in policy.scopes]
    if contexts:
        return max(dict.fromkeys(contexts), key=contexts.count)
    grant = policy.grant
    if grant.patient:
        return "patient"
    return "user" if grant.subject else "system"


def insufficient_scope(message: str, expression: list[str] | None = None) -> Forbidden:
    """403 with `WWW-Authenticate: Bearer error="insufficient_scope"` (RFC 6750 §3.1)."""
    safe = message.replace("\\", "").replace('"', "'")
    header = f'Bearer realm="fhir", error="insufficient_scope", error_description="{safe}"'
    return Forbidden(message, expression=expression, headers={"WWW-Authenticate": header})


def forbidden(resource_type: str | None, letter: str, policy: Policy | None = None) -> Forbidden:
    what = LETTER_NAMES.get(letter, letter)
    target = resource_type or "this server's resources"
    example = f"{scope_family(policy)}/{resource_type or '*'}.{letter}"
    return insufficient_scope(
        f"The access token's scopes do not permit {what} of {target} (needs e.g. {example})"
    )


def forbidden_link(what: str, types: Iterable[str], policy: Policy | None = None) -> Forbidden:
    names = ", ".join(types)
    return insufficient_scope(
        f"The access token's scopes do not permit searching {names}, which {what} reaches "
        f"(needs e.g. {scope_family(policy)}/{names.split(', ')[0]}.s)"
    )


# Matches no resource (no resource has an empty id): stands for a link that reaches nothing.
NOTHING: Criterion = IdCriterion(("",))


def required(
    method: str, parts: list[str], conditional_create: bool = False
) -> tuple[str, str] | None:
    """(resource type, the letters all needed) for a request on `parts` (the path below the
    base; the first part a resource type), or None when the storage view decides alone
    (operations). Conditional interactions also search, so they need `s` as well."""
    n = len(parts)
    m = "GET" if method == "HEAD" else method
    rtype = parts[0]
    if n == 1:
        letters = {"GET": "s", "POST": "cs" if conditional_create else "c",
                   "PUT": "us", "PATCH": "us", "DELETE": "ds"}.get(m)  # fmt: skip
        return (rtype, letters) if letters else None
    second = parts[1]
    if n == 2 and second in ("_search", "_history"):
        return rtype, "s"
    if n == 2 and not second.startswith("$"):
        letters = {"GET": "r", "PUT": "u", "PATCH": "u", "DELETE": "d"}.get(m)
        return (rtype, letters) if letters else None
    if n in (3, 4) and parts[2] == "_history":
        return rtype, "r"
    if n == 3 and not parts[2].startswith("$") and parts[2] != "*":
        return parts[2], "s"  # compartment search: Patient/1/Observation searches Observations
    return None


def require(ctx: Services, needed: tuple[str, str] | None, id: str | None = None) -> None:
    """Refuse (403) an interaction a letter of which no scope grants on the type. A no-op when
    the request is not restricted (authorization off, or an unrestricted grant). `id`: the
    instance a read targets (the user's own fhirUser resource may always be read)."""
    storage = ctx.storage
    if needed is None or not isinstance(storage, ScopedStorage):
        return
    resource_type, letters = needed
    policy = storage.enforcer.policy
    if letters == "r" and id is not None and policy.is_fhir_user(resource_type, id):
        return
    for letter in letters:
        if not storage.enforcer.policy.access(resource_type, letter).covered:
            raise forbidden(resource_type, letter, policy)


def _compartment_clause(resource_type: str, patient: str) -> Clause:
    criteria: list[Criterion] = [
        ReferenceCriterion(p, "Patient", patient)
        for p in compartment_params("Patient", resource_type)
    ]
    if resource_type == "Patient":
        criteria.insert(0, IdCriterion((patient,)))
    return Clause(tuple(criteria))


def to_cnf(alternatives: list[tuple[Clause, ...]]) -> tuple[Clause, ...] | None:
    """OR of ANDs of clauses -> an AND of clauses (each an OR of criteria), by distribution.
    () when an alternative has no clause (matches everything); None when too large."""
    if any(not alt for alt in alternatives):
        return ()
    out: list[tuple[Criterion, ...]] = [()]
    for alt in alternatives:
        if len(out) * len(alt) > MAX_CNF_CLAUSES:
            return None
        out = [
            prefix + tuple(c for c in clause.criteria if c not in prefix)
            for prefix in out
            for clause in alt
        ]
    return tuple(Clause(c) for c in dict.fromkeys(out))


@dataclass
class Plan:
    """How a single-type search is restricted: nothing reachable, extra clauses, or (too complex
    to express) filtering after the fact."""

    nothing: bool = False
    clauses: tuple[Clause, ...] = ()
    post_filter: bool = False


class Enforcer:
    """The policy plus what it takes to turn rules into search criteria (the unscoped services,
    for parsing granular scope queries and resolving their value sets)."""

    def __init__(self, services: Services, policy: Policy, base_url: str) -> None:
        self.services = services
        self.policy = policy
        self.base_url = base_url
        self._clauses: dict[tuple[str, Rule], tuple[Clause, ...] | None] = {}

    async def rule_clauses(self, resource_type: str, rule: Rule) -> tuple[Clause, ...] | None:
        """The rule as ANDed clauses on `resource_type`; None when it can match nothing."""
        key = (resource_type, rule)
        if key in self._clauses:
            return self._clauses[key]
        clauses: tuple[Clause, ...] | None = ()
        if rule.patient is not None:
            clauses = (_compartment_clause(resource_type, rule.patient),)
        if rule.params and clauses is not None:
            clauses = await self._granular(resource_type, rule.params, clauses)
        self._clauses[key] = clauses
        return clauses

    async def _granular(
        self, resource_type: str, params: tuple[tuple[str, str], ...], base: tuple[Clause, ...]
    ) -> tuple[Clause, ...] | None:
        ctx = self.services
        try:
            parsed = parse_search(
                search_context(ctx, self.base_url), (resource_type,), list(params),
                default_count=1, max_count=1,
            )  # fmt: skip
            query = await resolve_terminology(ctx, parsed.query)
        except FhirError:
            return None
        if parsed.ignored or not query.clauses:
            return None  # a restriction the server cannot apply reaches nothing
        return (*base, *query.clauses)

    async def plan(self, resource_type: str, access: Access) -> Plan:
        if access.unrestricted:
            return Plan()
        alternatives: list[tuple[Clause, ...]] = []
        for rule in access.rules:
            clauses = await self.rule_clauses(resource_type, rule)
            if clauses is not None:
                alternatives.append(clauses)
        if not alternatives:
            return Plan(nothing=True)
        cnf = to_cnf(alternatives)
        if cnf is None:
            return Plan(post_filter=True)
        return Plan(clauses=cnf)

    # -- chains and _has ------------------------------------------------------------------------
    async def restrict_links(
        self, clauses: tuple[Clause, ...], searcher: Searcher
    ) -> tuple[Clause, ...]:
        """`clauses` with every chain and `_has` (nested ones included) confined to what the
        grant may search on the type it reaches; 403 when it reaches no type the grant covers
        with `s`. Unchanged (the same objects) when there is nothing to confine. `searcher`:
        the engine (or the open transaction) that answers whether a `_list`'s List is reached."""
        out: list[Clause] = []
        changed = False
        for clause in clauses:
            criteria: list[Criterion] = []
            for c in clause.criteria:
                linked = await self._link(c, searcher)
                changed = changed or linked != (c,)
                criteria += linked
            out.append(Clause(tuple(dict.fromkeys(criteria))))
        return tuple(out) if changed else clauses

    async def _link_rules(self, resource_type: str, what: str) -> tuple[Clause, ...] | None:
        """The clauses confining a link to `resource_type` (None: it reaches nothing)."""
        plan = await self.plan(resource_type, self.policy.access(resource_type, "s"))
        if plan.nothing:
            return None
        if plan.post_filter:
            raise Forbidden(
                f"The access token's scopes on {resource_type} are too complex to apply to "
                f"{what}; search {resource_type} directly instead"
            )
        return plan.clauses

    async def _link(self, c: Criterion, searcher: Searcher) -> tuple[Criterion, ...]:
        """One criterion as the grant may use it: several when a chain's target types are
        confined differently (ORed within the clause)."""
        if isinstance(c, HasCriterion):
            what = f"_has:{c.source_type}:{c.param}"
            if not self.policy.access(c.source_type, "s").covered:
                raise forbidden_link(what, (c.source_type,), self.policy)
            inner = await self.restrict_links(c.inner, searcher)
            extra = await self._link_rules(c.source_type, what)
            if extra is None:
                return (NOTHING,)
            if not extra and inner is c.inner:
                return (c,)
            return (HasCriterion(c.source_type, c.param, (*inner, *extra)),)
        if isinstance(c, ListCriterion):  # `_list=id`: the List's items, so reading the List
            access = self.policy.access_any("List", "rs")
            if not access.covered:
                raise forbidden_link("_list", ("List",), self.policy)
            found = await reachable_ids(self, searcher, "List", [c.list_id], access)
            return (c,) if c.list_id in found else (NOTHING,)
        if isinstance(c, ChainCriterion):
            what = f"the chained parameter {c.param}"
            covered = [t for t in c.target_types if self.policy.access(t, "s").covered]
            if not covered:
                raise forbidden_link(what, c.target_types, self.policy)
            inner = await self.restrict_links(c.inner, searcher)
            open_types: list[str] = []
            confined: list[Criterion] = []
            for t in covered:
                extra = await self._link_rules(t, what)
                if extra is None:
                    continue
                if not extra:
                    open_types.append(t)
                else:
                    confined.append(ChainCriterion(c.param, (t,), (*inner, *extra)))
            if not open_types and not confined:
                return (NOTHING,)
            if len(open_types) == len(c.target_types) and inner is c.inner:
                return (c,)
            chains: list[Criterion] = []
            if open_types:
                chains.append(ChainCriterion(c.param, tuple(open_types), inner))
            return (*chains, *confined)
        return (c,)


def scoped_services(services: Services, grant: AccessGrant, base_url: str) -> Services:
    """A per-request copy of `services` whose storage enforces `grant`."""
    policy = Policy(grant)
    if all(policy.unrestricted_everywhere(x) for x in LETTERS):
        return services  # system/*.cruds (or equivalent): nothing to restrict
    enforcer = Enforcer(services, policy, base_url)
    return dataclasses.replace(services, storage=ScopedStorage(services.storage, enforcer))
