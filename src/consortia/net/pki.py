"""Node identity on the network: organization CAs, node certificates, and who a peer is.

Each member organization runs an X.509 CA; genesis lists every organization's CA certificate(s).
An organization issues one certificate per node it operates:

    subject CN = node name, O = org id
    SAN        = DNS:localhost, IP:127.0.0.1, URI:consortia://<chain_id>/<org_id>/<node_name>
    EKU        = TLS server auth + TLS client auth (a node both accepts and dials)

The URI is the identity the network layer trusts; the DNS/IP names only let ordinary TLS tools talk
to a local node. After a TLS handshake, ``identify_peer`` turns the peer's verified leaf certificate
into a ``NodeIdentity`` and refuses it (one ``PeerRejectedError`` subclass per reason) when:

- no CA in the trust anchors signed it directly (defence in depth: OpenSSL already checked this),
- the URI's organization is not the organization of the CA that signed it (org A's CA must not be
  able to mint a node of org B),
- the URI names another chain, or the URI / CN are missing or malformed,
- its serial number or SHA-256 fingerprint is in the caller's ``Revocations`` (genesis or
  governance hold that list; there is no CRL/OCSP, on purpose: the chain itself is the authority).

Algorithms: certificates use ECDSA P-256 with SHA-256. The chain's signature suite (``intl`` =
Ed25519, ``gm`` = SM2/SM3) is independent of the transport: blocks, votes and transactions carry
their own suite signatures, so TLS only authenticates the channel. TLS over SM2 (TLCP, GB/T
38636-2020) is not available in Python's ``ssl`` module (OpenSSL's TLS 1.3 stack does not offer it),
so ``gm`` chains also use P-256 for node certificates.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Same alphabet and length as registry ids: safe inside a URI path segment and a file name.
NAME_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
URI_SCHEME: Final = "consortia://"
DEFAULT_CA_VALIDITY_DAYS: Final = 3650
DEFAULT_NODE_VALIDITY_DAYS: Final = 397  # the usual one-year-and-a-month ceiling for TLS leaves
# Clock skew between organizations: a certificate is valid from a few minutes before it was made.
CLOCK_SKEW: Final = datetime.timedelta(minutes=5)
MAX_PEM_BYTES: Final = 1024 * 1024  # a CA bundle is a few KiB; refuse to parse megabytes
MAX_TRUSTED_CAS: Final = 1024
MAX_REVOKED: Final = 100_000


class PkiError(ValueError):
    """A certificate, key or trust list is unusable (caller or configuration error)."""


class PeerRejectedError(Exception):
    """A TLS-authenticated peer is not allowed on this network; ``reason`` is a stable code."""

    reason = "rejected"


class UnknownIssuerError(PeerRejectedError):
    """No trusted organization CA signed the peer's certificate."""

    reason = "unknown_ca"


class BadIdentityError(PeerRejectedError):
    """The certificate lacks a well-formed consortia URI / CN, or they disagree."""

    reason = "bad_identity"


class OrgMismatchError(PeerRejectedError):
    """The certificate claims an organization other than the one whose CA signed it."""

    reason = "org_mismatch"


class WrongChainError(PeerRejectedError):
    """The certificate's URI names another chain."""

    reason = "wrong_chain"


class RevokedError(PeerRejectedError):
    """The certificate's serial number or fingerprint is revoked."""

    reason = "revoked"


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid chain / org / node name, else raise ``PkiError``."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise PkiError(f"{kind} must be 1..64 ASCII letters, digits, '.', '_', '-': {value!r}")
    return value


def node_uri(chain_id: str, org_id: str, node_name: str) -> str:
    return f"{URI_SCHEME}{chain_id}/{org_id}/{node_name}"


def fingerprint(cert: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's DER encoding (what revocation by fingerprint matches)."""
    return cert.fingerprint(hashes.SHA256())


# ---------------------------------------------------------------------------------------------
# Issuing


@dataclass(frozen=True)
class OrgCA:
    """An organization's CA: its certificate (listed in genesis) and signing key (kept offline)."""

    org_id: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class NodeCredentials:
    """A node's own TLS certificate and private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _now(now: datetime.datetime | None) -> datetime.datetime:
    if now is None:
        return datetime.datetime.now(datetime.UTC)
    if now.tzinfo is None:
        raise PkiError("now must be timezone-aware")
    return now


def _validity(now: datetime.datetime, days: int) -> tuple[datetime.datetime, datetime.datetime]:
    if not 1 <= days <= 36500:
        raise PkiError(f"validity must be 1..36500 days, got {days}")
    return now - CLOCK_SKEW, now + datetime.timedelta(days=days)


def create_org_ca(
    org_id: str,
    *,
    validity_days: int = DEFAULT_CA_VALIDITY_DAYS,
    now: datetime.datetime | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> OrgCA:
    """Create a self-signed ECDSA P-256 CA for ``org_id`` that may sign node certificates only.

    ``path_length=0``: an organization cannot delegate to sub-CAs, so genesis names every signer.
    """
    check_name("org id", org_id)
    key = key or ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(_now(now), validity_days)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org_id),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{org_id} consortia node CA"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return OrgCA(org_id, cert, key)


def issue_node_certificate(
    ca: OrgCA,
    *,
    chain_id: str,
    node_name: str,
    validity_days: int = DEFAULT_NODE_VALIDITY_DAYS,
    now: datetime.datetime | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> NodeCredentials:
    """Issue a TLS client+server certificate for ``node_name`` of ``ca.org_id`` on ``chain_id``."""
    check_name("chain id", chain_id)
    check_name("node name", node_name)
    key = key or ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(_now(now), validity_days)
    end = min(end, ca.cert.not_valid_after_utc)  # a leaf must not outlive its CA
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ca.org_id),
            x509.NameAttribute(NameOID.COMMON_NAME, node_name),
        ]
    )
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
            x509.UniformResourceIdentifier(node_uri(chain_id, ca.org_id, node_name)),
        ]
    )
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(san, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return NodeCredentials(cert, key)


# ---------------------------------------------------------------------------------------------
# PEM


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def certs_from_pem(data: bytes) -> list[x509.Certificate]:
    """All certificates in a PEM bundle (at least one); ``PkiError`` if there are none or junk."""
    if len(data) > MAX_PEM_BYTES:
        raise PkiError(f"PEM data of {len(data)} bytes exceeds {MAX_PEM_BYTES}")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise PkiError(f"not a PEM certificate bundle: {exc}") from exc
    if not certs:
        raise PkiError("no certificate in PEM data")
    return certs


def cert_from_pem(data: bytes) -> x509.Certificate:
    """Exactly one certificate from PEM data."""
    certs = certs_from_pem(data)
    if len(certs) != 1:
        raise PkiError(f"expected one certificate, found {len(certs)}")
    return certs[0]


def key_to_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with ``password`` when given (always give one for keys at rest)."""
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def key_from_pem(data: bytes, password: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    if len(data) > MAX_PEM_BYTES:
        raise PkiError("PEM key data too large")
    try:
        key = serialization.load_pem_private_key(data, password)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"cannot load private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"expected an EC private key, got {type(key).__name__}")
    return key


def write_pem(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write PEM data; a private key file is created 0600 (never readable by others, not even
    briefly)."""
    mode = 0o600 if private else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    if private:
        os.chmod(path, 0o600)  # O_CREAT's mode does not apply to an existing file


def read_pem(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_PEM_BYTES:
        raise PkiError(f"{path}: {size} bytes exceeds {MAX_PEM_BYTES}")
    return path.read_bytes()


# ---------------------------------------------------------------------------------------------
# Trust and revocation


@dataclass(frozen=True)
class Revocations:
    """Revoked node certificates, by serial number and/or SHA-256 fingerprint of the DER."""

    serials: frozenset[int] = frozenset()
    fingerprints: frozenset[bytes] = frozenset()

    def __post_init__(self) -> None:
        if len(self.serials) + len(self.fingerprints) > MAX_REVOKED:
            raise PkiError(f"more than {MAX_REVOKED} revocations")
        if any(len(fp) != 32 for fp in self.fingerprints):
            raise PkiError("a fingerprint is the 32-byte SHA-256 of the certificate's DER")

    def is_revoked(self, cert: x509.Certificate) -> bool:
        return self.revokes(cert.serial_number, fingerprint(cert))

    def revokes(self, serial: int, cert_fingerprint: bytes) -> bool:
        return serial in self.serials or cert_fingerprint in self.fingerprints


@dataclass(frozen=True)
class TrustAnchors:
    """The organizations' CA certificates from genesis: org id → its CA certificate(s)."""

    cas: Mapping[str, tuple[x509.Certificate, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        total = sum(len(v) for v in self.cas.values())
        if total == 0:
            raise PkiError("no trusted CA")
        if total > MAX_TRUSTED_CAS:
            raise PkiError(f"more than {MAX_TRUSTED_CAS} trusted CAs")
        seen: dict[bytes, str] = {}
        for org_id, certs in self.cas.items():
            check_name("org id", org_id)
            for cert in certs:
                _check_ca(org_id, cert)
                fp = fingerprint(cert)
                if fp in seen:
                    # One CA listed under two organizations would make its nodes' org ambiguous.
                    raise PkiError(f"the same CA certificate is listed for {seen[fp]} and {org_id}")
                seen[fp] = org_id

    @classmethod
    def from_pem(cls, pems: Mapping[str, bytes | Sequence[bytes]]) -> TrustAnchors:
        """Build from genesis data: org id → one PEM bundle, or a list of PEMs (CA rotation)."""
        cas: dict[str, tuple[x509.Certificate, ...]] = {}
        for org_id, value in pems.items():
            blobs = [value] if isinstance(value, bytes) else list(value)
            cas[org_id] = tuple(c for blob in blobs for c in certs_from_pem(blob))
        return cls(cas)

    def all_certs(self) -> Iterable[tuple[str, x509.Certificate]]:
        for org_id in sorted(self.cas):
            for cert in self.cas[org_id]:
                yield org_id, cert

    def bundle_pem(self) -> str:
        """Every CA certificate as one PEM string (the ``cadata`` of an ``ssl.SSLContext``)."""
        return b"".join(cert_to_pem(c) for _, c in self.all_certs()).decode("ascii")

    def issuing_org(self, cert: x509.Certificate) -> str:
        """The organization whose CA directly signed ``cert``, else ``UnknownIssuerError``."""
        for org_id, ca in self.all_certs():
            if ca.subject != cert.issuer:
                continue
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return org_id
        raise UnknownIssuerError(f"no trusted CA signed certificate with issuer {cert.issuer}")


def _check_ca(org_id: str, cert: x509.Certificate) -> None:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound as exc:
        raise PkiError(f"CA of {org_id} has no basicConstraints") from exc
    if not bc.ca:
        raise PkiError(f"certificate listed as the CA of {org_id} is not a CA")
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise PkiError(f"CA of {org_id} is not self-signed: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Who is the peer?


@dataclass(frozen=True)
class NodeIdentity:
    """A node as its verified certificate names it."""

    chain_id: str
    org_id: str
    node_name: str
    serial: int
    fingerprint: bytes

    @property
    def uri(self) -> str:
        return node_uri(self.chain_id, self.org_id, self.node_name)

    def __str__(self) -> str:
        return f"{self.node_name}@{self.org_id}"


def _parse_uri(cert: x509.Certificate) -> tuple[str, str, str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise BadIdentityError("certificate has no subjectAltName") from exc
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    ours = [u for u in uris if u.startswith(URI_SCHEME)]
    if len(ours) != 1:
        raise BadIdentityError(f"expected exactly one {URI_SCHEME} URI, found {len(ours)}")
    parts = ours[0][len(URI_SCHEME) :].split("/")
    if len(parts) != 3 or not all(NAME_RE.fullmatch(p) for p in parts):
        raise BadIdentityError(f"malformed node URI {ours[0]!r}")
    return parts[0], parts[1], parts[2]


def identify_peer(
    cert_der: bytes, trust: TrustAnchors, revocations: Revocations, *, chain_id: str
) -> NodeIdentity:
    """Who a TLS-verified peer is, or a ``PeerRejectedError`` subclass saying why it may not talk.

    Call right after the handshake with ``SSLObject.getpeercert(binary_form=True)``.
    """
    if not cert_der or len(cert_der) > 64 * 1024:
        raise BadIdentityError("missing or oversize peer certificate")
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError as exc:
        raise BadIdentityError(f"unparsable peer certificate: {exc}") from exc
    issuer_org = trust.issuing_org(cert)
    if revocations.is_revoked(cert):
        raise RevokedError(f"certificate serial {cert.serial_number:x} is revoked")
    cert_chain, cert_org, node_name = _parse_uri(cert)
    if cert_chain != chain_id:
        raise WrongChainError(f"certificate is for chain {cert_chain!r}, this is {chain_id!r}")
    if cert_org != issuer_org:
        raise OrgMismatchError(
            f"certificate claims org {cert_org!r} but {issuer_org}'s CA signed it"
        )
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1 or cns[0].value != node_name:
        raise BadIdentityError(f"certificate CN does not match node name {node_name!r}")
    return NodeIdentity(chain_id, issuer_org, node_name, cert.serial_number, fingerprint(cert))


def own_identity(creds: NodeCredentials, trust: TrustAnchors, *, chain_id: str) -> NodeIdentity:
    """Our own identity, checked by the same rules peers will apply (fail fast at startup)."""
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if creds.key.public_key().public_bytes(
        serialization.Encoding.DER, pub
    ) != creds.cert.public_key().public_bytes(serialization.Encoding.DER, pub):
        raise PkiError("own private key does not match own certificate")
    der = creds.cert.public_bytes(serialization.Encoding.DER)
    try:
        return identify_peer(der, trust, Revocations(), chain_id=chain_id)
    except PeerRejectedError as exc:
        raise PkiError(f"own certificate is unusable: {exc}") from exc
