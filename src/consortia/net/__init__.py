"""The network layer: TLS 1.3 with mutual certificate authentication, CBOR frames, peers.

- ``pki``: organization CAs, node certificates, revocation, ``identify_peer`` → ``NodeIdentity``.
- ``tls``: the ``ssl.SSLContext`` pair (TLS 1.3 only, certificates required both ways).
- ``frames``: 4-byte length + canonical CBOR frames; the ``Message`` envelope.
- ``transport``: ``PeerNetwork``, one node's bounded, authenticated connections.

Imports only ``consortia.codec`` from the layers below.
"""

from consortia.net.frames import FrameError, Message
from consortia.net.pki import (
    NodeCredentials,
    NodeIdentity,
    OrgCA,
    PeerRejectedError,
    PkiError,
    Revocations,
    TrustAnchors,
    create_org_ca,
    issue_node_certificate,
)
from consortia.net.transport import (
    HandshakeError,
    NetConfig,
    NetLimits,
    PeerAddress,
    PeerInfo,
    PeerNetwork,
    Received,
)

__all__ = [
    "FrameError",
    "HandshakeError",
    "Message",
    "NetConfig",
    "NetLimits",
    "NodeCredentials",
    "NodeIdentity",
    "OrgCA",
    "PeerAddress",
    "PeerInfo",
    "PeerNetwork",
    "PeerRejectedError",
    "PkiError",
    "Received",
    "Revocations",
    "TrustAnchors",
    "create_org_ca",
    "issue_node_certificate",
]
