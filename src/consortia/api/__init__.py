"""consortia's REST API (FastAPI): see ``consortia.api.app`` and docs/api.md."""

from consortia.api.app import ApiSettings, create_app
from consortia.api.auth import RequestAuthenticator, sign_request
from consortia.api.backend import ApiBackend, LocalBackend, NodeBackend, StateRead

__all__ = [
    "ApiBackend",
    "ApiSettings",
    "LocalBackend",
    "NodeBackend",
    "RequestAuthenticator",
    "StateRead",
    "create_app",
    "sign_request",
]
