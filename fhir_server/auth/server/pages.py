"""The login, consent and error pages: plain HTML forms that work without JavaScript."""

from __future__ import annotations

from html import escape

from fhir_server.auth.server import scopeset

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem} label{display:block;margin:.4rem 0} .error{color:#a00;font-weight:bold}
fieldset{margin:1rem 0;border:1px solid #ccc} .granular{margin-left:2rem;font-size:.9rem}
button{margin-right:1rem;padding:.4rem 1rem} code{font-size:.85rem}
"""


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )


def _hidden(txn: str, csrf: str) -> str:
    return (
        f'<input type="hidden" name="txn" value="{escape(txn)}">'
        f'<input type="hidden" name="csrf_token" value="{escape(csrf)}">'
    )


def error_page(message: str) -> str:
    return _page("Authorization error", f'<p class="error">{escape(message)}</p>')


def login_page(txn: str, csrf: str, client_name: str, error: str | None = None) -> str:
    err = f'<p class="error">{escape(error)}</p>' if error else ""
    return _page(
        "Sign in",
        f"<p><strong>{escape(client_name)}</strong> asks to access your health records.</p>{err}"
        '<form method="post" action="/auth/authorize">'
        f"{_hidden(txn, csrf)}"
        '<label>Username <input name="username" autocomplete="username" required></label>'
        '<label>Password <input name="password" type="password" '
        'autocomplete="current-password" required></label>'
        '<button type="submit">Sign in</button></form>',
    )


def _describe(scope: str) -> str:
    if scope == "offline_access":
        return (
            "offline_access: keep access after you close the app (a refresh token that lasts "
            "until you or an administrator revoke it)"
        )
    if scope == "online_access":
        return "online_access: keep access while you are using the app"
    if scope in ("openid", "fhirUser"):
        return f"{scope}: tell the app who you are"
    if scope.startswith("launch"):
        return f"{scope}: share which patient/encounter is in context"
    s = scopeset.parse(scope)
    if s is None:
        return scope
    who = {"patient": "the patient's", "user": "your", "system": "all"}[s.context]
    what = "all resource types (including types added later)" if s.type == "*" else s.type
    verbs = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
    actions = ", ".join(verbs[ch] for ch in s.letters)
    extra = f" restricted to {s.query[1:]}" if s.query else ""
    return f"{scope}: {actions} {who} {what}{extra}"


def consent_page(
    txn: str,
    csrf: str,
    client_name: str,
    username: str,
    scopes: list[str],
    patients: list[tuple[str, str]] | None,
    need_patient: bool,
    error: str | None = None,
) -> str:
    err = f'<p class="error">{escape(error)}</p>' if error else ""
    items: list[str] = []
    for scope in scopes:
        items.append(
            f'<label><input type="checkbox" name="scope" value="{escape(scope)}" checked> '
            f"{escape(_describe(scope))}</label>"
        )
        choices = scopeset.granular_choices(scope)
        if choices:
            items.append(
                '<div class="granular"><p>Or share only these categories (untick the line '
                "above and tick the ones you want):</p>"
            )
            for choice in choices:
                items.append(
                    f'<label><input type="checkbox" name="scope" value="{escape(choice)}"> '
                    f"<code>{escape(choice.split('?', 1)[1])}</code></label>"
                )
            items.append("</div>")
    picker = ""
    if need_patient:
        if patients:
            options = "".join(
                f'<option value="{escape(pid)}">{escape(label)}</option>' for pid, label in patients
            )
            control = f'<select name="patient" required>{options}</select>'
        else:
            control = '<input name="patient" placeholder="Patient id" required>'
        picker = f"<fieldset><legend>Patient</legend><label>Patient in context {control}</label></fieldset>"
    return _page(
        "Allow access?",
        f"<p>Signed in as <strong>{escape(username)}</strong>. "
        f"<strong>{escape(client_name)}</strong> asks for:</p>{err}"
        '<form method="post" action="/auth/authorize">'
        f"{_hidden(txn, csrf)}<fieldset><legend>Permissions</legend>{''.join(items)}</fieldset>"
        f"{picker}"
        '<button type="submit" name="decision" value="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny">Deny</button></form>',
    )
