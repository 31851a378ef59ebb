"""/fhir/.well-known/smart-configuration, /.well-known/openid-configuration and the
CapabilityStatement's oauth-uris extension (pure functions of the server's URLs)."""

from __future__ import annotations

from typing import Any

from fhir_server.auth.server.core import Urls

CAPABILITIES = [
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "context-banner",
    "context-style",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
]

SCOPES_SUPPORTED = [
    "openid",
    "fhirUser",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
    "patient/*.cruds",
    "patient/*.rs",
    "patient/*.read",
    "patient/*.write",
    "patient/*.*",
    "user/*.cruds",
    "user/*.rs",
    "user/*.read",
    "user/*.write",
    "user/*.*",
    "system/*.cruds",
    "system/*.rs",
    "system/*.read",
    "system/launch",
]

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def smart_configuration(urls: Urls, registration: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "issuer": urls.issuer,
        "jwks_uri": urls.auth("jwks"),
        "authorization_endpoint": urls.auth("authorize"),
        "token_endpoint": urls.auth("token"),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
        "introspection_endpoint": urls.auth("introspect"),
        "revocation_endpoint": urls.auth("revoke"),
    }
    if registration:
        doc["registration_endpoint"] = urls.auth("register")
    return doc


def openid_configuration(urls: Urls, registration: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "issuer": urls.issuer,
        "authorization_endpoint": urls.auth("authorize"),
        "token_endpoint": urls.auth("token"),
        "jwks_uri": urls.auth("jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "fhirUser"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "fhirUser", "nonce"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "code_challenge_methods_supported": ["S256"],
        "introspection_endpoint": urls.auth("introspect"),
        "revocation_endpoint": urls.auth("revoke"),
    }
    if registration:
        doc["registration_endpoint"] = urls.auth("register")
    return doc


def capability_security(urls: Urls, registration: bool) -> dict[str, Any]:
    """CapabilityStatement.rest.security for SMART (older clients read only this)."""
    ext = [
        {"url": "token", "valueUri": urls.auth("token")},
        {"url": "authorize", "valueUri": urls.auth("authorize")},
        {"url": "introspect", "valueUri": urls.auth("introspect")},
        {"url": "revoke", "valueUri": urls.auth("revoke")},
    ]
    if registration:
        ext.append({"url": "register", "valueUri": urls.auth("register")})
    return {
        "cors": True,
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
            }
        ],
        "extension": [{"url": OAUTH_URIS, "extension": ext}],
        "description": "SMART App Launch 2.2 and Backend Services; discovery at "
        f"{urls.fhir_base}/.well-known/smart-configuration",
    }
