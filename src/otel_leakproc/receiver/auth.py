"""Authentication and tenant resolution, shared by the HTTP and gRPC servers.

A request names its credentials with `Authorization: Bearer <token>` or `Authorization: Basic ...`, and may
name a tenant with `X-Scope-OrgID`. With credentials configured, a request without a valid one is refused
(401 / UNAUTHENTICATED), and `X-Scope-OrgID` is honoured only for tenants the credential allows (else 403 /
PERMISSION_DENIED). With none configured, auth is off and the header is trusted when the config says so.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re

from otel_leakproc.errors import LeakprocError
from otel_leakproc.receiver.config import AuthConfig, Credential

# Tenant ids end up in series identity, metric labels and file names: keep them to a safe alphabet.
_TENANT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class AuthError(LeakprocError):
    """Credentials are missing or wrong (`forbidden=False`, 401), or do not allow the tenant (403)."""

    def __init__(self, message: str, *, forbidden: bool = False) -> None:
        self.forbidden = forbidden
        super().__init__(message)


def resolve_tenant(config: AuthConfig, authorization: str | None, scope_org_id: str | None) -> str:
    """Return the tenant a request belongs to.

    Args:
        config: the auth section of the config.
        authorization: the `Authorization` header (or gRPC `authorization` metadata), if any.
        scope_org_id: the `X-Scope-OrgID` header, if any.

    Raises:
        AuthError: missing or invalid credentials, a malformed tenant id, or a tenant not allowed.
    """
    scope = (scope_org_id or "").strip()
    if scope and not _TENANT.match(scope):
        raise AuthError(
            "X-Scope-OrgID: tenant ids are 1-64 characters of letters, digits, '.', '_' and '-'", forbidden=True
        )
    if not config.enabled:
        return scope if scope and config.trust_scope_header else config.default_tenant
    credential = _match(config, authorization)
    if not scope or scope == credential.tenant:
        return credential.tenant
    if "*" in credential.allowed_tenants or scope in credential.allowed_tenants:
        return scope
    raise AuthError(f"X-Scope-OrgID: these credentials may not write to tenant {scope!r}", forbidden=True)


def _match(config: AuthConfig, authorization: str | None) -> Credential:
    if not authorization:
        raise AuthError("authorization: credentials required (Authorization: Bearer <token> or Basic)")
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    scheme = scheme.lower()
    if scheme == "bearer":
        for credential in config.credentials:
            if credential.token and hmac.compare_digest(credential.token.encode(), value.encode()):
                return credential
        raise AuthError("authorization: unknown bearer token")
    if scheme == "basic":
        try:
            username, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError("authorization: basic credentials are not valid base64 of user:password") from None
        if not sep:
            raise AuthError("authorization: basic credentials are not valid base64 of user:password")
        for credential in config.credentials:
            if (
                credential.username
                and hmac.compare_digest(credential.username.encode(), username.encode())
                and hmac.compare_digest(credential.password.encode(), password.encode())
            ):
                return credential
        raise AuthError("authorization: unknown user or wrong password")
    raise AuthError(f"authorization: unsupported scheme {scheme!r} (use Bearer or Basic)")


def visible_tenants(config: AuthConfig, authorization: str | None) -> frozenset[str] | None:
    """Tenants whose series a reader of the API may see; None means all (auth off, or a "*" credential).

    Raises:
        AuthError: auth is on and the credentials are missing or wrong.
    """
    if not config.enabled:
        return None
    credential = _match(config, authorization)
    if "*" in credential.allowed_tenants:
        return None
    return frozenset((credential.tenant, *credential.allowed_tenants))
