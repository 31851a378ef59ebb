"""Patient/[id]/$everything and Encounter/[id]/$everything over HTTP, with paging."""

from __future__ import annotations

from typing import Any

import httpx

from fhir_server.fhir.compartments import compartment_resource_types
from fhir_server.operations.everything import may_include, references, type_groups
from tests.api.conftest import BASE
from tests.operations.conftest import device, encounter, observation, patient, put

HR = [("http://loinc.org", "8867-4")]


def keys(body: dict[str, Any], mode: str | None = None) -> list[str]:
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in body.get("entry", [])
        if mode is None or e["search"]["mode"] == mode
    ]


def next_link(body: dict[str, Any]) -> str | None:
    return next((lk["url"] for lk in body.get("link", []) if lk["relation"] == "next"), None)


async def load(client: httpx.AsyncClient) -> None:
    await put(client, {"resourceType": "Organization", "id": "org", "name": "Clinic"})
    await put(client, {"resourceType": "Practitioner", "id": "doc", "name": [{"family": "Doc"}]})
    await put(client, patient("p", managingOrganization={"reference": "Organization/org"}))
    await put(client, patient("other"))
    await put(client, device("dev", "p"))
    await put(client, device("dev-other", "other"))
    await put(
        client,
        encounter(
            "enc",
            "p",
            "2026-10-14T09:30:00Z",
            "2026-10-14T09:50:00Z",
            participant=[{"individual": {"reference": "Practitioner/doc"}}],
        ),
    )
    await put(client, encounter("enc-old", "p", "2025-01-14T09:30:00Z", "2025-01-14T09:50:00Z"))
    for i in range(1, 6):
        await put(
            client,
            observation(
                f"o{i}",
                "p",
                f"2026-10-0{i}T08:00:00Z",
                HR,
                encounter={"reference": "Encounter/enc"},
            ),
        )
    await put(
        client,
        observation(
            "o-perf", "other", "2026-10-01T08:00:00Z", HR, performer=[{"reference": "Patient/p"}]
        ),
    )
    await put(client, observation("o-other", "other", "2026-10-01T08:00:00Z", HR))
    await put(
        client,
        {
            "resourceType": "Group",
            "id": "grp",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": "Patient/p"}}],
        },
    )


async def test_patient_everything(client: httpx.AsyncClient) -> None:
    await load(client)
    r = await client.get("Patient/p/$everything")
    assert r.status_code == 200, r.text
    body = r.json()
    matches = keys(body, "match")
    assert matches[0] == "Patient/p"
    assert set(matches) == {
        "Patient/p",
        "Device/dev",
        "Encounter/enc",
        "Encounter/enc-old",
        "Group/grp",
        *(f"Observation/o{i}" for i in range(1, 6)),
        "Observation/o-perf",  # in the compartment through performer
    }
    included = set(keys(body, "include"))
    assert {"Organization/org", "Practitioner/doc"} <= included
    assert "Observation/o-other" not in included and "Device/dev-other" not in included
    assert len(keys(body)) == len(set(keys(body))), "each resource once"
    assert next_link(body) is None


async def test_type_since_and_care_dates(client: httpx.AsyncClient) -> None:
    await load(client)
    body = (
        await client.get("Patient/p/$everything", params={"_type": "Observation,Device"})
    ).json()
    assert set(keys(body)) == {
        "Device/dev",
        "Observation/o-perf",
        *(f"Observation/o{i}" for i in range(1, 6)),
    }
    body = (
        await client.get(
            "Patient/p/$everything", params={"start": "2026-10-03", "end": "2026-10-20"}
        )
    ).json()
    matches = set(keys(body, "match"))
    assert {"Observation/o3", "Observation/o4", "Observation/o5", "Encounter/enc"} <= matches
    assert not {"Observation/o1", "Observation/o2", "Encounter/enc-old"} & matches
    assert {"Patient/p", "Device/dev"} <= matches  # no care date: kept
    # _since: only what changed after a point; rewrite one Observation and ask again.
    first = (await client.get("Observation/o1")).json()["meta"]["lastUpdated"]
    await put(client, observation("o2", "p", "2026-10-02T08:00:00Z", HR, status="amended"))
    body = (
        await client.get("Patient/p/$everything", params={"_since": first, "_type": "Observation"})
    ).json()
    assert "Observation/o2" in keys(body)


async def test_paging_visits_everything_once(client: httpx.AsyncClient) -> None:
    await load(client)
    whole = set(keys((await client.get("Patient/p/$everything")).json(), "match"))
    seen: list[str] = []
    url: str | None = f"{BASE}/Patient/p/$everything?_count=3"
    pages = 0
    while url is not None:
        r = await client.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        page = keys(body, "match")
        assert len(page) <= 4  # the patient itself comes on top of the first page's 3
        seen += page
        url = next_link(body)
        pages += 1
    assert pages >= 4
    assert sorted(seen) == sorted(whole)
    r = await client.get("Encounter/enc/$everything", params={"_page": "forged.token"})
    assert r.status_code == 400


async def test_encounter_everything(client: httpx.AsyncClient) -> None:
    await load(client)
    body = (await client.get("Encounter/enc/$everything")).json()
    assert keys(body, "match")[0] == "Encounter/enc"
    assert set(keys(body, "match")) == {
        "Encounter/enc",
        *(f"Observation/o{i}" for i in range(1, 6)),
    }
    assert {"Patient/p", "Practitioner/doc"} <= set(keys(body, "include"))


async def test_errors(client: httpx.AsyncClient) -> None:
    await load(client)
    assert (await client.get("Patient/nobody/$everything")).status_code == 404
    for q in ({"_type": "Nonsense"}, {"start": "yesterday"}, {"_count": "-1"}, {"_since": "x"}):
        r = await client.get("Patient/p/$everything", params=q)
        assert r.status_code == 400, q
    assert (await client.get("Observation/o1/$everything")).status_code == 404
    r = await client.get("Encounter/enc/$everything", headers={"Accept": "text/csv"})
    assert r.status_code == 406


def test_type_groups_follow_the_compartment_definition() -> None:
    known = frozenset(compartment_resource_types("Patient")) | {"Device"}
    groups = type_groups("Patient", known, None)
    by_type = {t: params for types, params in groups for t in types}
    assert by_type["Observation"] == ("subject", "performer")
    assert by_type["Encounter"] == ("patient",)
    assert by_type["Device"] == ("patient",)
    assert "Practitioner" not in by_type
    assert {
        t
        for t, _ in [
            (t, p)
            for types, p in type_groups("Patient", known, frozenset({"Device"}))
            for t in types
        ]
    } == {"Device"}
    assert references(
        {
            "a": [{"reference": "Patient/x"}, {"reference": "http://e/x"}],
            "b": {"reference": "Patient/x"},
        }
    ) == [("Patient", "x")]


async def test_other_patients_are_never_included(client: httpx.AsyncClient) -> None:
    """Privacy: a Group's other members, and what they reference, stay out of the Bundle."""
    await load(client)
    await put(client, patient("third"))
    await put(
        client,
        {
            "resourceType": "Group",
            "id": "panel",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{p}"}} for p in ("other", "p", "third")],
        },
    )
    # p's Encounter cites another patient's reading and device; p's reading cites another device
    await put(client, encounter("enc-x", "p", "2026-10-15T09:30:00Z", "2026-10-15T09:50:00Z",
                                reasonReference=[{"reference": "Observation/o-other"},
                                                 {"reference": "Device/dev-other"}]))  # fmt: skip
    await put(client, observation("o-dev", "p", "2026-10-06T08:00:00Z", HR, device_id="dev-other"))
    for path in ("Patient/p/$everything", "Encounter/enc-x/$everything"):
        body = (await client.get(path)).json()
        got = keys(body)
        assert "Group/panel" in got or path.startswith("Encounter")
        assert not {"Patient/other", "Patient/third"} & set(got), path
        assert "Observation/o-other" not in got and "Device/dev-other" not in got, path
        assert "Patient/p" in got, path
    body = (await client.get("Patient/other/$everything")).json()
    assert not {"Patient/p", "Patient/third"} & set(keys(body))


def test_may_include() -> None:
    from fhir_server.fhir.searchparams import SearchParamRegistry

    reg = SearchParamRegistry.load_default()
    obs = observation("x", "a", "2026-10-01T08:00:00Z", HR)
    assert may_include(obs, "a", reg) and not may_include(obs, "b", reg)
    assert may_include(patient("a"), "a", reg) and not may_include(patient("b"), "a", reg)
    assert not may_include(patient("a"), None, reg)
    assert may_include(device("d", "a"), "a", reg) and not may_include(device("d", "b"), "a", reg)
    assert may_include({"resourceType": "Device", "id": "d"}, "a", reg)
    assert may_include({"resourceType": "Practitioner", "id": "doc"}, "a", reg)


async def test_each_resource_once_when_included_before_it_is_matched(
    client: httpx.AsyncClient,
) -> None:
    """bdl-7: an Observation cited by an Encounter (an earlier type group) is listed once."""
    await put(client, patient("q"))
    await put(client, observation("q-obs", "q", "2026-10-17T08:00:00Z", HR))
    await put(client, encounter("q-enc", "q", "2026-10-17T09:30:00Z", "2026-10-17T09:50:00Z",
                                reasonReference=[{"reference": "Observation/q-obs"}]))  # fmt: skip
    body = (await client.get("Patient/q/$everything")).json()
    urls = [e["fullUrl"] for e in body["entry"]]
    assert len(urls) == len(set(urls)), urls
    modes = {k: e["search"]["mode"] for k, e in zip(keys(body), body["entry"], strict=True)}
    assert modes["Observation/q-obs"] == "match" and modes["Encounter/q-enc"] == "match"


async def test_unknown_parameters_are_refused(client: httpx.AsyncClient) -> None:
    await load(client)
    r = await client.get("Patient/p/$everything", params={"bogus": "1"})
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert "'bogus'" in issue["diagnostics"] and issue["expression"] == ["bogus"]
    r = await client.get("Encounter/enc/$everything", params={"bogus": "1"})
    assert r.status_code == 400
    r = await client.get("Patient/p/$everything", params={"bogus": "1"},
                         headers={"Prefer": "handling=lenient"})  # fmt: skip
    assert r.status_code == 200 and "Patient/p" in keys(r.json())


async def test_later_pages_do_not_include_the_head_again(client: httpx.AsyncClient) -> None:
    await load(client)
    url: str | None = f"{BASE}/Encounter/enc/$everything?_count=2"
    seen: list[str] = []
    while url is not None:
        body = (await client.get(url)).json()
        seen += keys(body)
        url = next_link(body)
    assert seen.count("Patient/p") == 1 and seen.count("Practitioner/doc") == 1
    assert seen.count("Encounter/enc") == 1
