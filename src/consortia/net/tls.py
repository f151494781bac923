"""TLS 1.3 contexts for mutual certificate authentication between consortium nodes.

Both sides present a certificate and both require one (``CERT_REQUIRED``); the only trusted roots
are the organizations' CAs from genesis (never the system store). Hostname checking is off on
purpose: a node is identified by the ``consortia://`` URI in its certificate, which the transport
checks against the node it meant to dial (``pki.identify_peer``), not by DNS name.

Python 3.11's ``ssl`` loads a certificate and key only from files, so the key is written to a
private temporary file *encrypted with a one-time random password* and removed at once: the
plaintext key never touches the disk.
"""

from __future__ import annotations

import os
import secrets
import ssl
import tempfile
from pathlib import Path

from consortia.net.pki import NodeCredentials, TrustAnchors, cert_to_pem, key_to_pem


def _base_context(protocol: int, creds: NodeCredentials, trust: TrustAnchors) -> ssl.SSLContext:
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # identity = the certificate's consortia URI, checked after
    ctx.verify_mode = ssl.CERT_REQUIRED
    # RFC 5280 strictness (e.g. key identifiers present, CA basicConstraints critical).
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_TICKET
    ctx.load_verify_locations(cadata=trust.bundle_pem())
    _load_own(ctx, creds)
    return ctx


def _load_own(ctx: ssl.SSLContext, creds: NodeCredentials) -> None:
    password = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory(prefix="consortia-tls-") as tmp:  # mode 0700
        cert_path = Path(tmp) / "cert.pem"
        key_path = Path(tmp) / "key.pem"
        cert_path.write_bytes(cert_to_pem(creds.cert))
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_to_pem(creds.key, password))
        ctx.load_cert_chain(cert_path, key_path, password=password)


def server_context(creds: NodeCredentials, trust: TrustAnchors) -> ssl.SSLContext:
    """Context for accepting: TLS 1.3 only, client certificate required, genesis CAs only."""
    return _base_context(ssl.PROTOCOL_TLS_SERVER, creds, trust)


def client_context(creds: NodeCredentials, trust: TrustAnchors) -> ssl.SSLContext:
    """Context for dialing: TLS 1.3 only, server certificate required, genesis CAs only."""
    return _base_context(ssl.PROTOCOL_TLS_CLIENT, creds, trust)


def peer_certificate_der(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> bytes:
    """The peer's verified leaf certificate (DER), or ``b""`` if there is none."""
    if ssl_object is None:
        return b""
    der = ssl_object.getpeercert(binary_form=True)
    return der or b""
