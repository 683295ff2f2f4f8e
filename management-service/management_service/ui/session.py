"""Who is looking at the web UI: a signed session cookie, and CSRF tokens bound to it.

An operator signs in once with ``MANAGEMENT_API_KEY`` (actions allowed) or
``MANAGEMENT_READ_API_KEY`` (reading only). The cookie holds the role, an expiry and a random nonce,
signed with a key derived from the API key that granted the role: changing that key ends every
session it signed. Nothing is stored on the server, so every replica accepts the cookie. The
cookie is HttpOnly, SameSite=Strict and limited to ``/ui``; every form that changes something also
carries a CSRF token (an HMAC of the session's nonce) and is refused from another site.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

from pydantic import SecretStr

from management_service.config import Settings

COOKIE = "rebalancer_ui"
LIFETIME_SECONDS = 8 * 3600
_CONTEXT = b"rebalancer management ui session v1"
# Without any key, sessions are never signed by anything an attacker could know.
_PROCESS_SECRET = secrets.token_bytes(32)


class Role(StrEnum):
    """What a session may do."""

    OPERATOR = "operator"  # read and act (retry, delete, add)
    READER = "reader"  # read only


@dataclass(frozen=True)
class Session:
    """A valid session: its role and nonce (the CSRF token is derived from the nonce)."""

    role: Role
    nonce: str
    expires: int

    @property
    def can_act(self) -> bool:
        """True for an operator."""
        return self.role is Role.OPERATOR


def _signing_key(key: SecretStr | None) -> bytes:
    secret = key.get_secret_value().encode() if key is not None else _PROCESS_SECRET
    return hmac.new(secret, _CONTEXT, hashlib.sha256).digest()


def _key_for(settings: Settings, role: Role) -> bytes:
    return _signing_key(settings.api_key if role is Role.OPERATOR else settings.read_api_key)


def _sign(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def role_for_key(settings: Settings, presented: str) -> Role | None:
    """The role a presented API key grants, compared in constant time; None if it grants none."""
    given = presented.strip().encode()
    if not given:
        return None
    granted = None
    for role, key in ((Role.OPERATOR, settings.api_key), (Role.READER, settings.read_api_key)):
        if key is not None and hmac.compare_digest(given, key.get_secret_value().encode()):
            granted = granted or role
    return granted


def new_cookie(settings: Settings, role: Role, *, now: float | None = None) -> str:
    """A signed cookie value for a new session of ``role``."""
    expires = int((now or time.time()) + LIFETIME_SECONDS)
    body = f"{role.value}.{expires}.{secrets.token_urlsafe(18)}"
    return f"{body}.{_sign(_key_for(settings, role), body)}"


def read_cookie(settings: Settings, value: str | None, *, now: float | None = None) -> Session | None:
    """The session a cookie value carries, or None when it is missing, forged or expired."""
    if not value or value.count(".") != 3:
        return None
    role_text, expires_text, nonce, signature = value.split(".")
    try:
        role, expires = Role(role_text), int(expires_text)
    except ValueError:
        return None
    if role is Role.OPERATOR and settings.api_key is None:
        return None
    if role is Role.READER and settings.read_api_key is None:
        return None
    expected = _sign(_key_for(settings, role), f"{role_text}.{expires_text}.{nonce}")
    if not hmac.compare_digest(signature, expected) or expires < (now or time.time()):
        return None
    return Session(role, nonce, expires)


def csrf_token(settings: Settings, session: Session) -> str:
    """The token every form of this session carries."""
    return _sign(_key_for(settings, session.role), f"csrf.{session.nonce}")


def csrf_valid(settings: Settings, session: Session, token: str | None) -> bool:
    """True when ``token`` is this session's CSRF token (constant-time comparison)."""
    return bool(token) and hmac.compare_digest(str(token), csrf_token(settings, session))
