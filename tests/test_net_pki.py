"""Organization CAs, node certificates, trust anchors, revocation and peer identification."""

from __future__ import annotations

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from consortia.net import pki
from consortia.net.pki import (
    BadIdentityError,
    OrgCA,
    OrgMismatchError,
    PkiError,
    Revocations,
    RevokedError,
    TrustAnchors,
    UnknownIssuerError,
    WrongChainError,
)

CHAIN = "test-chain"
CA_A = pki.create_org_ca("orgA")
CA_B = pki.create_org_ca("orgB")
ROGUE = pki.create_org_ca("orgA")  # same org name, but not the CA genesis lists
TRUST = TrustAnchors({"orgA": (CA_A.cert,), "orgB": (CA_B.cert,)})
NODE = pki.issue_node_certificate(CA_A, chain_id=CHAIN, node_name="n1", validity_days=30)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _identify(cert: x509.Certificate, revocations: Revocations | None = None) -> pki.NodeIdentity:
    return pki.identify_peer(_der(cert), TRUST, revocations or Revocations(), chain_id=CHAIN)


def test_node_certificate_contents() -> None:
    cert = NODE.cert
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "n1"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.IPv4Address("127.0.0.1")]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "consortia://test-chain/orgA/n1"
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert life == datetime.timedelta(days=30) + pki.CLOCK_SKEW
    cert.verify_directly_issued_by(CA_A.cert)


def test_ca_is_self_signed_and_restricted() -> None:
    bc = CA_A.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    ku = CA_A.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and not ku.digital_signature
    CA_A.cert.verify_directly_issued_by(CA_A.cert)


def test_leaf_never_outlives_its_ca() -> None:
    short_ca = pki.create_org_ca("orgS", validity_days=10)
    creds = pki.issue_node_certificate(short_ca, chain_id=CHAIN, node_name="n", validity_days=365)
    assert creds.cert.not_valid_after_utc == short_ca.cert.not_valid_after_utc


@pytest.mark.parametrize("name", ["", "a/b", "x" * 65, "n 1", "ü"])
def test_names_are_checked(name: str) -> None:
    with pytest.raises(PkiError):
        pki.issue_node_certificate(CA_A, chain_id=CHAIN, node_name=name)
    with pytest.raises(PkiError):
        pki.create_org_ca(name)


def test_validity_bounds() -> None:
    with pytest.raises(PkiError):
        pki.issue_node_certificate(CA_A, chain_id=CHAIN, node_name="n", validity_days=0)
    with pytest.raises(PkiError):
        pki.create_org_ca("o", now=datetime.datetime(2024, 1, 1))  # naive time


def test_identify_peer() -> None:
    ident = _identify(NODE.cert)
    assert (ident.chain_id, ident.org_id, ident.node_name) == (CHAIN, "orgA", "n1")
    assert ident.serial == NODE.cert.serial_number
    assert ident.fingerprint == NODE.cert.fingerprint(hashes.SHA256())
    assert ident.uri == "consortia://test-chain/orgA/n1"
    assert str(ident) == "n1@orgA"


def test_unknown_issuer_even_with_the_same_name() -> None:
    rogue = pki.issue_node_certificate(ROGUE, chain_id=CHAIN, node_name="n1")
    with pytest.raises(UnknownIssuerError):
        _identify(rogue.cert)


def test_org_must_match_the_signing_ca() -> None:
    # orgA's CA key minting a node that claims to belong to orgB.
    forged = pki.issue_node_certificate(
        OrgCA("orgB", CA_A.cert, CA_A.key), chain_id=CHAIN, node_name="b1"
    )
    with pytest.raises(OrgMismatchError):
        _identify(forged.cert)


def test_wrong_chain() -> None:
    other = pki.issue_node_certificate(CA_B, chain_id="other-chain", node_name="n2")
    with pytest.raises(WrongChainError):
        _identify(other.cert)


def test_revoked_by_serial_or_fingerprint() -> None:
    with pytest.raises(RevokedError):
        _identify(NODE.cert, Revocations(serials=frozenset({NODE.cert.serial_number})))
    fp = pki.fingerprint(NODE.cert)
    with pytest.raises(RevokedError):
        _identify(NODE.cert, Revocations(fingerprints=frozenset({fp})))
    other = pki.issue_node_certificate(CA_A, chain_id=CHAIN, node_name="n9")
    assert _identify(other.cert, Revocations(fingerprints=frozenset({fp}))).node_name == "n9"
    with pytest.raises(PkiError):
        Revocations(fingerprints=frozenset({b"short"}))


def _leaf_with_san(san: list[x509.GeneralName], cn: str = "n1") -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ski = CA_A.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(CA_A.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(CA_A.key, hashes.SHA256())
    )


@pytest.mark.parametrize(
    ("san", "cn"),
    [
        ([x509.DNSName("localhost")], "n1"),  # no URI
        ([x509.UniformResourceIdentifier("consortia://test-chain/orgA")], "n1"),
        ([x509.UniformResourceIdentifier("consortia://test-chain/orgA/n1/x")], "n1"),
        ([x509.UniformResourceIdentifier("consortia://test-chain/orgA/n 1")], "n1"),
        (
            [
                x509.UniformResourceIdentifier("consortia://test-chain/orgA/n1"),
                x509.UniformResourceIdentifier("consortia://test-chain/orgA/n2"),
            ],
            "n1",
        ),
        ([x509.UniformResourceIdentifier("consortia://test-chain/orgA/n1")], "n2"),  # CN differs
    ],
)
def test_bad_identity(san: list[x509.GeneralName], cn: str) -> None:
    with pytest.raises(BadIdentityError):
        _identify(_leaf_with_san(san, cn))


def test_garbage_certificate_bytes() -> None:
    with pytest.raises(BadIdentityError):
        pki.identify_peer(b"", TRUST, Revocations(), chain_id=CHAIN)
    with pytest.raises(BadIdentityError):
        pki.identify_peer(b"\x30\x03\x02\x01\x01", TRUST, Revocations(), chain_id=CHAIN)


def test_trust_anchor_checks() -> None:
    with pytest.raises(PkiError):
        TrustAnchors({})
    with pytest.raises(PkiError):
        TrustAnchors({"orgA": (NODE.cert,)})  # a leaf is not a CA
    with pytest.raises(PkiError):
        TrustAnchors({"orgA": (CA_A.cert,), "orgB": (CA_A.cert,)})
    with pytest.raises(PkiError):
        TrustAnchors({"bad/org": (CA_A.cert,)})


def test_trust_from_genesis_pems_with_rotation() -> None:
    new_a = pki.create_org_ca("orgA")
    bundle = pki.cert_to_pem(CA_A.cert) + pki.cert_to_pem(new_a.cert)
    trust = TrustAnchors.from_pem({"orgA": bundle, "orgB": [pki.cert_to_pem(CA_B.cert)]})
    assert len(trust.cas["orgA"]) == 2
    node = pki.issue_node_certificate(new_a, chain_id=CHAIN, node_name="n7")
    assert trust.issuing_org(node.cert) == "orgA"
    assert trust.bundle_pem().count("BEGIN CERTIFICATE") == 3
    with pytest.raises(PkiError):
        TrustAnchors.from_pem({"orgA": b"not a pem"})


def test_pem_round_trips(tmp_path: Path) -> None:
    assert pki.cert_from_pem(pki.cert_to_pem(NODE.cert)) == NODE.cert
    with pytest.raises(PkiError):
        pki.cert_from_pem(pki.cert_to_pem(CA_A.cert) + pki.cert_to_pem(CA_B.cert))
    pem = pki.key_to_pem(NODE.key, b"pw")
    assert b"ENCRYPTED" in pem
    assert pki.key_from_pem(pem, b"pw").private_numbers() == NODE.key.private_numbers()
    with pytest.raises(PkiError):
        pki.key_from_pem(pem, b"wrong")
    path = tmp_path / "node.key"
    pki.write_pem(path, pem, private=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert pki.read_pem(path) == pem
    cert_path = tmp_path / "node.crt"
    pki.write_pem(cert_path, pki.cert_to_pem(NODE.cert))
    assert pki.cert_from_pem(pki.read_pem(cert_path)) == NODE.cert


def test_own_identity_checks_key_and_chain() -> None:
    assert pki.own_identity(NODE, TRUST, chain_id=CHAIN).node_name == "n1"
    with pytest.raises(PkiError):
        pki.own_identity(NODE, TRUST, chain_id="other")
    other = pki.issue_node_certificate(CA_A, chain_id=CHAIN, node_name="n2")
    with pytest.raises(PkiError):
        pki.own_identity(pki.NodeCredentials(NODE.cert, other.key), TRUST, chain_id=CHAIN)
