"""What a browser push subscription must look like before we store it.

Pure Python (no pywebpush): notifications-subscribe imports only this.

Our servers will POST to whatever endpoint a member hands us, so the
endpoint is the dangerous part: `https://` only, at most 2 KB, no user info,
and never a literal loopback, private, link-local or otherwise non-public
address, nor a name that only resolves inside a network (`localhost`,
`*.internal`, single labels). Legacy IPv4 spellings (`2130706433`,
`0x7f.1`) are caught too, since the resolver would accept them, and so are
IPv6 forms that carry an IPv4 address (mapped, translated, 6to4, NAT64;
IPv4-compatible, local-use NAT64 and Teredo are refused outright). The port
must be 443 (or left out): the endpoints browsers get from FCM, Mozilla
autopush, Apple and WNS never name another, and any other port would let a
member aim our servers at, say, an SSH or SMTP listener. Names are
not resolved here (the answer could change before we send); the fan-out's
session checks the address and port it actually connects to
(shared/push_transport.py).
Dev mode also accepts `http://` to a loopback address, so a local push
service can receive.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
from urllib.parse import urlsplit

from shared.text_rules import TextRule

MAX_ENDPOINT_LENGTH = 2048
_B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_B64STD = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")

# What the validators below check first, stated as patterns in openapi.json
# (functions/notifications/subscribe.py annotates its model with them).
ENDPOINT_CHARS = TextRule("endpoint-chars", "^[!-~]*$",
                          "The endpoint must be a plain ASCII URL without spaces or control characters.")
# What openapi.json states for a deployed stack: an https:// URL (the scheme in any case, as
# validate_endpoint reads it). Dev mode also takes http:// to a loopback address, which the
# document says in words: it describes the deployed contract.
DEPLOYED_ENDPOINT_PATTERN = "^[Hh][Tt][Tt][Pp][Ss]://"
# Keys are base64url (what PushSubscription.toJSON() gives) or standard base64
# (what `btoa()` gives, as the predecessor frontend sent them): one alphabet per
# value, stored as unpadded base64url either way.
# 65 bytes starting 0x04 (an uncompressed point) are 87 characters, "B" then one of A-P.
P256DH_FORMAT = TextRule("p256dh-format", "^B[A-P](?:[A-Za-z0-9_-]{85}|[A-Za-z0-9+/]{85})={0,2}$",
                         "p256dh must be an uncompressed P-256 public key (65 bytes), base64url "
                         "(or standard base64) encoded.")
# 16 bytes are 22 characters.
AUTH_FORMAT = TextRule("auth-format", "^(?:[A-Za-z0-9_-]{22}|[A-Za-z0-9+/]{22})={0,2}$",
                       "auth must be 16 bytes, base64url (or standard base64) encoded.")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan", ".intranet", ".corp")


class InvalidSubscription(ValueError):
    """A field of a push subscription is unusable; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


# The port every push service's endpoints use (none is ever written in them).
PUSH_SERVICE_PORTS = frozenset({443})

# IPv6 prefixes whose last 32 bits are an IPv4 address the packet ends up at.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 SIIT
# Never a public push service: deprecated IPv4-compatible (RFC 4291) and
# local-use NAT64 (RFC 8215, the IPv4 address sits where the operator chose).
_REFUSED_V6 = (ipaddress.IPv6Network("::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def is_public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo is not None or any(ip in net for net in _REFUSED_V6):
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and (ip in _NAT64 or ip in _IPV4_TRANSLATED):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
    return ip.is_global and not ip.is_multicast


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # inet_aton accepts what resolvers accept: "127.1", "0x7f.0.0.1", "2130706433".
    if re.fullmatch(r"[0-9a-fx.]+", host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _is_loopback(host: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
    if ip is not None:
        return ip.is_loopback
    return host == "localhost" or host.endswith(".localhost")


def validate_endpoint(endpoint: str, *, dev_mode: bool) -> str:
    """The endpoint as it will be stored, or InvalidSubscription."""
    def bad(message: str) -> InvalidSubscription:
        return InvalidSubscription("endpoint", message)

    if len(endpoint) > MAX_ENDPOINT_LENGTH:
        raise bad(f"The endpoint must be at most {MAX_ENDPOINT_LENGTH} characters.")
    if not ENDPOINT_CHARS.holds(endpoint):
        raise bad(ENDPOINT_CHARS.message)
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        raise bad("The endpoint is not a valid URL.") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in ("https", "http") or not host:
        raise bad("The endpoint must be an https:// URL.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise bad("The endpoint must not carry user information.")
    if parts.fragment:
        raise bad("The endpoint must not have a fragment.")
    if port == 0:
        raise bad("The endpoint's port is invalid.")

    ip = _literal_address(host)
    loopback = _is_loopback(host, ip)
    if dev_mode and loopback:
        return endpoint
    if scheme != "https":
        raise bad("The endpoint must be an https:// URL." + (" (http:// is accepted for loopback in dev mode.)" if dev_mode else ""))
    if port is not None and port not in PUSH_SERVICE_PORTS:
        raise bad("The endpoint must use the standard https port (443).")
    if ip is not None:
        if not is_public_address(ip):
            raise bad("The endpoint must not point at a loopback, private, link-local or reserved address.")
        return endpoint
    if loopback or host.endswith(_INTERNAL_SUFFIXES) or "." not in host:
        raise bad("The endpoint's host must be a public push service, not a local or internal name.")
    if not all(_LABEL.match(label) for label in host.split(".")) or host.split(".")[-1].isdigit():
        raise bad("The endpoint's host is not a valid DNS name.")
    return endpoint


def _b64url_decode(value: str, field: str) -> bytes:
    if _B64STD.match(value) and not _B64URL.match(value):
        value = value.translate(str.maketrans("+/", "-_"))
    if not _B64URL.match(value):
        raise InvalidSubscription(field, f"{field} must be base64url encoded.")
    try:
        return base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise InvalidSubscription(field, f"{field} must be base64url encoded.") from None


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def validate_p256dh(value: str) -> str:
    """The browser's ECDH public key: an uncompressed point on P-256. Returned unpadded."""
    from cryptography.hazmat.primitives.asymmetric import ec

    if not P256DH_FORMAT.holds(value):
        raise InvalidSubscription("p256dh", P256DH_FORMAT.message)
    raw = _b64url_decode(value, "p256dh")
    if len(raw) != 65 or raw[0] != 0x04:  # cannot happen once the pattern holds
        raise InvalidSubscription("p256dh", P256DH_FORMAT.message)
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise InvalidSubscription("p256dh", "p256dh is not a point on the P-256 curve.") from None
    return _b64url(raw)


def validate_auth(value: str) -> str:
    """The browser's auth secret: 16 bytes. Returned unpadded."""
    if not AUTH_FORMAT.holds(value):
        raise InvalidSubscription("auth", AUTH_FORMAT.message)
    raw = _b64url_decode(value, "auth")
    if len(raw) != 16:  # cannot happen once the pattern holds
        raise InvalidSubscription("auth", AUTH_FORMAT.message)
    return _b64url(raw)
