"""`fhir-server clients|users|keys ...`: manage the auth store and keys, also while servers run
(SQLite in WAL mode; keys are re-read by running workers when the file changes). With a
mongodb:// `--storage` (or FHIR_SERVER_STORAGE) they act on that database's `auth_*` collections,
which every server process on every host reads."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fhir_server.auth.server.clients import (
    CLIENT_TYPES,
    InvalidMetadata,
    client_document,
    new_client,
)
from fhir_server.auth.server.keys import KeyRing
from fhir_server.auth.server.models import User, valid_fhir_user, valid_username
from fhir_server.auth.server.passwords import hash_password
from fhir_server.auth.server.store import (
    AuthStore,
    create_auth_store,
    is_mongodb_url,
    open_key_ring,
)

COMMANDS = ("clients", "users", "keys")

DEMO_APP_ID = "demo-app"
DEMO_PASSWORD = "demo-password"
DEMO_USERS = (
    ("demo-practitioner", "Practitioner/practitioner-chen"),
    ("demo-patient", "Patient/patient-01"),
)
DEMO_REDIRECT = "http://localhost:9000/callback"


def add_commands(sub: Any, store_options: Callable[[argparse.ArgumentParser], None]) -> None:
    clients = sub.add_parser("clients", help="SMART apps and Backend Services clients")
    csub = clients.add_subparsers(dest="action", required=True)
    add = csub.add_parser("add", help="register a client; prints it as JSON (secret shown once)")
    add.add_argument(
        "--type",
        choices=sorted(CLIENT_TYPES),
        default="public",
        help="public (PKCE), symmetric (client_secret_basic), asymmetric "
        "(private_key_jwt), backend (client_credentials + private_key_jwt)",
    )
    add.add_argument("--name", default="", help="client_name shown on the consent page")
    add.add_argument("--client-id", help="client_id (default: random)")
    add.add_argument(
        "--redirect-uri", action="append", default=[], help="exact redirect URI (repeatable)"
    )
    add.add_argument(
        "--scope",
        action="append",
        default=[],
        help="scopes the client may be granted (space-separated, repeatable)",
    )
    add.add_argument("--jwks-uri", help="the client's JWKS URL (asymmetric, backend)")
    add.add_argument("--jwks", help="inline JWKS: JSON text or @file")
    add.add_argument("--launch-uri", help="the app's EHR launch URL")
    store_options(add)
    lst = csub.add_parser("list", help="list clients as JSON")
    store_options(lst)
    rm = csub.add_parser("remove", help="remove a client")
    rm.add_argument("client_id")
    store_options(rm)

    users = sub.add_parser("users", help="users who sign in at the authorization server")
    usub = users.add_subparsers(dest="action", required=True)
    uadd = usub.add_parser("add", help="add or replace a user")
    uadd.add_argument("--username", required=True)
    uadd.add_argument("--password", help="password (default: read from standard input)")
    uadd.add_argument(
        "--fhir-user",
        required=True,
        help="Patient/ID, Practitioner/ID, PractitionerRole/ID or RelatedPerson/ID",
    )
    store_options(uadd)
    ulst = usub.add_parser("list", help="list users as JSON")
    store_options(ulst)
    urm = usub.add_parser("remove", help="remove a user")
    urm.add_argument("username")
    store_options(urm)

    keys = sub.add_parser("keys", help="the server's signing keys")
    ksub = keys.add_subparsers(dest="action", required=True)
    rot = ksub.add_parser("rotate", help="new signing keys; old ones stay published for a while")
    store_options(rot)


def _print(doc: Any) -> None:
    print(json.dumps(doc, indent=2))


def _jwks_arg(value: str) -> Any:
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    return json.loads(text)


async def _clients(store: AuthStore, args: argparse.Namespace) -> int:
    if args.action == "list":
        _print([c.public_json() for c in await store.list_clients()])
        return 0
    if args.action == "remove":
        if not await store.delete_client(args.client_id):
            print(f"no client {args.client_id!r}", file=sys.stderr)
            return 1
        print(f"removed client {args.client_id}")
        return 0
    method, grants = CLIENT_TYPES[args.type]
    meta: dict[str, Any] = {
        "client_name": args.name,
        "token_endpoint_auth_method": method,
        "grant_types": grants,
        "redirect_uris": args.redirect_uri,
        "scope": " ".join(args.scope),
        "launch_uri": args.launch_uri,
    }
    if args.client_id:
        meta["client_id"] = args.client_id
        if await store.get_client(args.client_id) is not None:
            print(f"client {args.client_id!r} exists; remove it first", file=sys.stderr)
            return 1
    if args.jwks_uri:
        meta["jwks_uri"] = args.jwks_uri
    if args.jwks:
        try:
            meta["jwks"] = _jwks_arg(args.jwks)
        except (OSError, ValueError) as exc:
            print(f"--jwks: {exc}", file=sys.stderr)
            return 2
    try:
        client, secret = new_client(meta)
    except InvalidMetadata as exc:
        print(f"invalid client: {exc}", file=sys.stderr)
        return 2
    await store.put_client(client)
    _print(client_document(client, secret))
    return 0


async def _users(store: AuthStore, args: argparse.Namespace) -> int:
    if args.action == "list":
        _print([u.public_json() for u in await store.list_users()])
        return 0
    if args.action == "remove":
        if not await store.delete_user(args.username):
            print(f"no user {args.username!r}", file=sys.stderr)
            return 1
        print(f"removed user {args.username}")
        return 0
    if not valid_username(args.username):
        print("invalid username", file=sys.stderr)
        return 2
    if not valid_fhir_user(args.fhir_user):
        print(
            "--fhir-user must be Patient/ID, Practitioner/ID, PractitionerRole/ID, "
            "RelatedPerson/ID or Person/ID",
            file=sys.stderr,
        )
        return 2
    password = args.password
    if password is None:
        if sys.stdin.isatty():
            password = getpass.getpass("Password: ")
        else:
            password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("empty password", file=sys.stderr)
        return 2
    user = User(args.username, hash_password(password), args.fhir_user, int(time.time()))
    await store.put_user(user)
    _print(user.public_json())
    return 0


async def rotate_keys(data_dir: Path, store: AuthStore) -> list[str]:
    ring = await open_key_ring(data_dir, store)
    if isinstance(ring, KeyRing):
        return ring.rotate()
    from fhir_server.auth.server.mongo_store import MongoKeyRing

    assert isinstance(ring, MongoKeyRing)
    return await ring.rotate()


async def run(args: argparse.Namespace, data_dir: Path, storage_url: str | None = None) -> int:
    """`storage_url`: --storage / FHIR_SERVER_STORAGE; a mongodb:// one selects its database."""
    if args.command == "keys" and not is_mongodb_url(storage_url):
        kids = KeyRing.load_or_create(data_dir).rotate()  # the file alone; no auth.db needed
        print(f"new signing keys: {', '.join(kids)} (running servers pick them up)")
        return 0
    store = create_auth_store(data_dir, storage_url)
    await store.open()
    try:
        if args.command == "keys":
            kids = await rotate_keys(data_dir, store)
            print(f"new signing keys: {', '.join(kids)} (running servers pick them up)")
            return 0
        if args.command == "clients":
            return await _clients(store, args)
        return await _users(store, args)
    finally:
        await store.close()


async def ensure_demo(data_dir: Path, storage_url: str | None = None) -> bool:
    """The demo practitioner, patient and public app of `make run`; True when created now."""
    store = create_auth_store(data_dir, storage_url)
    await store.open()
    try:
        if await store.get_client(DEMO_APP_ID) is not None:
            return False
        client, _ = new_client(
            {
                "client_id": DEMO_APP_ID,
                "client_name": "Demo SMART app",
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "redirect_uris": [DEMO_REDIRECT],
            }
        )
        await store.put_client(client)
        for username, fhir_user in DEMO_USERS:
            if await store.get_user(username) is None:
                user = User(username, hash_password(DEMO_PASSWORD), fhir_user, int(time.time()))
                await store.put_user(user)
        return True
    finally:
        await store.close()


def demo_instructions(fhir_base: str) -> list[str]:
    users = ", ".join(f"{u} ({f})" for u, f in DEMO_USERS)
    return [
        f"SMART demo: public app client_id={DEMO_APP_ID} (redirect {DEMO_REDIRECT}, PKCE S256);",
        f"  users {users}, password {DEMO_PASSWORD!r} (change it: fhir-server users add ...)",
        f"  discovery: curl {fhir_base}/.well-known/smart-configuration",
        "  register more apps: fhir-server clients add --type public --redirect-uri URI",
    ]
