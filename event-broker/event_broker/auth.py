"""Who may send webhooks: Standard Webhooks signatures, a shared token, and a source allow-list.

Every secret comparison is constant-time (:func:`hmac.compare_digest`). Nothing here logs, and no
message names a secret or echoes a presented credential.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address, ip_address

from event_broker.config import BrokerSettings, IPNetwork
from event_broker.errors import Forbidden, Unauthorized

IPAddress = IPv4Address | IPv6Address

MAX_SIGNATURES = 8
_WEBHOOK_ID = re.compile(r"^[\x21-\x7e]{1,256}$")  # printable ASCII, no spaces
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")


class AuthMethod(StrEnum):
    """How a request proved who sent it (logged with each request)."""

    SIGNATURE = "signature"
    BEARER = "bearer"
    PASSPHRASE = "passphrase"  # noqa: S105 - a method name, not a secret
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class SignatureVerifier:
    """Checks ``webhook-signature`` against every configured secret (several during a rotation)."""

    keys: tuple[bytes, ...]
    tolerance_seconds: int

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float) -> str:
        """Return the verified ``webhook-id``; raise :class:`Unauthorized` otherwise."""
        msg_id, timestamp, signatures = _signature_headers(headers)
        self._check_time(int(timestamp), now)
        signed = f"{msg_id}.{timestamp}.".encode() + body
        expected = [
            base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()) for key in self.keys
        ]
        for candidate in signatures:
            if any(hmac.compare_digest(candidate, want) for want in expected):
                return msg_id
        raise Unauthorized(
            "webhook-signature does not match: check that the sender signs with one of the "
            "configured WEBHOOK_SECRET values and sends the body unmodified"
        )

    def _check_time(self, timestamp: int, now: float) -> None:
        if abs(now - timestamp) > self.tolerance_seconds:
            raise Unauthorized(
                f"webhook-timestamp is more than {self.tolerance_seconds} s away from the "
                "broker's clock: resend with a fresh timestamp, and check both clocks (NTP)"
            )


def _signature_headers(headers: Mapping[str, str]) -> tuple[str, str, list[bytes]]:
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    raw = headers.get("webhook-signature", "")
    if not (msg_id and timestamp and raw):
        raise Unauthorized(
            "signed webhooks need all three headers: webhook-id, webhook-timestamp, "
            "webhook-signature"
        )
    if not _WEBHOOK_ID.match(msg_id):
        raise Unauthorized("webhook-id must be 1-256 printable ASCII characters without spaces")
    if not _TIMESTAMP.match(timestamp):
        raise Unauthorized("webhook-timestamp must be whole seconds since the Unix epoch")
    signatures = [
        value.encode("latin-1")
        for version, _, value in (part.partition(",") for part in raw.split()[:MAX_SIGNATURES])
        if version == "v1" and value
    ]
    if not signatures:
        raise Unauthorized(
            "webhook-signature must be a space-separated list of v1,<base64 signature>"
        )
    return msg_id, timestamp, signatures


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if there is one."""
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return token.strip()


@dataclass(frozen=True, slots=True)
class TokenChecker:
    """Compares a presented token with ``WEBHOOK_TOKEN`` in constant time."""

    token: bytes | None

    def check(self, presented: str, *, where: str) -> None:
        """Raise :class:`Unauthorized` unless ``presented`` is the configured token."""
        if self.token is None:
            raise Unauthorized(f"token authentication is not configured; {where} is not accepted")
        if not hmac.compare_digest(presented.encode("utf-8", "replace"), self.token):
            raise Unauthorized(f"the token in {where} is wrong")


@dataclass(frozen=True, slots=True)
class SourcePolicy:
    """The optional allow-list of source networks, seen through trusted proxies only."""

    allowed: tuple[IPNetwork, ...]
    trusted_proxies: tuple[IPNetwork, ...]

    def check(self, peer: str | None, forwarded_for: str | None) -> None:
        """Raise :class:`Forbidden` when the source is not in the allow-list (if there is one)."""
        if not self.allowed:
            return
        source = self.client_address(peer, forwarded_for)
        if source is None or not _within(source, self.allowed):
            raise Forbidden(
                f"source address {source or 'unknown'} is not allowed; add it to "
                "WEBHOOK_ALLOWED_IPS (behind a proxy, list the proxy in WEBHOOK_TRUSTED_PROXIES)"
            )

    def client_address(self, peer: str | None, forwarded_for: str | None) -> IPAddress | None:
        """The sender's address: the peer, or the right-most untrusted X-Forwarded-For hop."""
        address = _parse(peer)
        if address is None or not forwarded_for or not _within(address, self.trusted_proxies):
            return address
        for hop in reversed(forwarded_for.split(",")):
            hop_address = _parse(hop.strip())
            if hop_address is None:
                return address  # a garbled hop: trust nothing further left
            address = hop_address
            if not _within(address, self.trusted_proxies):
                return address
        return address


def _parse(value: str | None) -> IPAddress | None:
    if not value:
        return None
    try:
        address = ip_address(value)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


@dataclass(frozen=True, slots=True)
class Authenticator:
    """Everything needed to decide whether a webhook may be considered."""

    signatures: SignatureVerifier | None
    tokens: TokenChecker
    sources: SourcePolicy
    disabled: bool

    @classmethod
    def from_settings(cls, settings: BrokerSettings) -> Authenticator:
        """Build the checks from validated settings."""
        keys = settings.signing_keys
        return cls(
            signatures=SignatureVerifier(keys, settings.webhook_tolerance_seconds) if keys else None,
            tokens=TokenChecker(settings.token),
            sources=SourcePolicy(
                tuple(settings.webhook_allowed_ips), tuple(settings.webhook_trusted_proxies)
            ),
            disabled=settings.webhook_auth_disabled,
        )

    def from_headers(
        self, headers: Mapping[str, str], body: bytes, *, now: float
    ) -> tuple[AuthMethod, str | None] | None:
        """Authenticate by header: ``(method, webhook id)``, or None when no header credential.

        A credential that is present but wrong is refused here, even if another would pass.
        """
        if "webhook-signature" in headers or "webhook-id" in headers:
            if self.signatures is None:
                raise Unauthorized("signed webhooks are not accepted: WEBHOOK_SECRET is not set")
            return AuthMethod.SIGNATURE, self.signatures.verify(headers, body, now=now)
        token = bearer_token(headers)
        if token is not None:
            self.tokens.check(token, where="the Authorization header")
            return AuthMethod.BEARER, None
        if self.disabled:
            return AuthMethod.DISABLED, None
        return None

    def from_passphrase(self, passphrase: object) -> AuthMethod:
        """Authenticate by the ``passphrase`` field of the body (for TradingView)."""
        if passphrase is None:
            raise Unauthorized(
                "no credentials: sign the webhook (webhook-signature), send "
                "'Authorization: Bearer <token>', or put the token in the body as 'passphrase'"
            )
        if not isinstance(passphrase, str):
            raise Unauthorized("'passphrase' must be a string")
        self.tokens.check(passphrase, where="'passphrase'")
        return AuthMethod.PASSPHRASE
