"""Building blocks the API's routers share: the route problem, JSON views of records, path hex
arguments and proven state reads.

``consortia.api.app`` and its routers (``records``, ``evidence``, ``stream``) import these from
here, so no router reaches into the application module's private helpers (``app`` re-exports
``ApiProblem``, ``Problem`` and ``jsonable`` for older callers). Nothing here does I/O or reads a
clock.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any

from pydantic import BaseModel

from consortia.api.backend import StateRead
from consortia.execution.state import ChainState

MAX_HASH_BYTES = 64  # a transaction or block hash in a path
# Record fields never returned (sealed to the operator/broker and the regulator).
PRIVATE_FIELDS = frozenset({"sealed_identity"})


class ApiProblem(Exception):
    """Raised by a route: answered as a problem detail with ``status`` and the stable ``code``."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


class Problem(BaseModel):
    """RFC 9457 problem details, with the stable error ``code``."""

    type: str
    title: str
    status: int
    detail: str
    code: str


# The 401/403 responses of every route that needs a signed request or a session (OpenAPI).
PRIVATE_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {
        "model": Problem,
        "description": "Unauthorized (problem details; `WWW-Authenticate: Consortia-Signature, "
        "Consortia-Session`): sign the request (X-Consortia-Account, X-Consortia-Timestamp, "
        "X-Consortia-Signature) or, for a GET, send `Authorization: Consortia-Session TOKEN`. "
        "Codes: AUTH_REQUIRED, BAD_REQUEST_SIGNATURE, STALE_REQUEST, REPLAYED_REQUEST, "
        "UNKNOWN_ACCOUNT, BAD_SESSION, SESSION_WRONG_CHAIN, SESSION_EXPIRED",
    },
    403: {
        "model": Problem,
        "description": "FORBIDDEN: not this caller's record; SESSION_READ_ONLY: a session "
        "was sent with a method other than GET (problem details)",
    },
}


def jsonable(value: Any) -> Any:
    """Dataclasses → objects (private fields dropped), bytes → lowercase hex, enums → names."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, bool | int | str | None):
        return value
    if is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: jsonable(getattr(value, f.name))
            for f in fields(value)
            if f.name not in PRIVATE_FIELDS
        }
    if isinstance(value, dict):
        return {
            (k.hex() if isinstance(k, bytes) else str(k)): jsonable(v)
            for k, v in value.items()
            if k not in PRIVATE_FIELDS
        }
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)


def hex_arg(text: str, what: str, *, max_bytes: int) -> bytes:
    """``text`` as 1..``max_bytes`` bytes of hex; a 400 ``BAD_REQUEST`` problem otherwise."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ApiProblem(400, "BAD_REQUEST", f"{what} must be hex") from None
    if not 1 <= len(raw) <= max_bytes:
        raise ApiProblem(400, "BAD_REQUEST", f"{what} must be 1..{max_bytes} bytes")
    return raw


def proven(read: StateRead, *, with_value: bool = True) -> dict[str, Any]:
    """A state read as JSON: key, height, state root and proof (and the raw value, unless the
    record must not be handed out whole)."""
    out: dict[str, Any] = {
        "key": read.key.hex(),
        "height": read.height,
        "state_root": read.state_root.hex(),
        "proof": read.proof.hex(),
    }
    if with_value:
        out["value"] = None if read.value is None else read.value.hex()
    return out


def read_at(state: ChainState, key: bytes) -> StateRead:
    """``key`` in one head snapshot, with its proof (value, proof, root, height belong together)."""
    return StateRead(
        key, state.tree.get(key), state.tree.prove(key).to_bytes(), state.state_root, state.height
    )


__all__ = [
    "MAX_HASH_BYTES",
    "PRIVATE_FIELDS",
    "PRIVATE_PROBLEMS",
    "ApiProblem",
    "Problem",
    "hex_arg",
    "jsonable",
    "proven",
    "read_at",
]
