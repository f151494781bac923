"""How a native module plugs into execution: a name and a table of typed methods."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from consortia import codec
from consortia.execution.context import TxContext
from consortia.execution.errors import BadArgumentsError

Handler = Callable[[TxContext, Any], None]


@dataclass(frozen=True)
class Method:
    """A callable entry point: arguments are decoded into ``args_type`` before ``handler`` runs."""

    args_type: type
    handler: Handler

    def parse_args(self, args: Mapping[str, Any]) -> Any:
        """Decode raw transaction arguments strictly (no unknown/missing fields, right types)."""
        try:
            return codec.from_cbor(self.args_type, dict(args), "args")
        except codec.CodecError as exc:
            raise BadArgumentsError(str(exc)) from exc


@dataclass(frozen=True)
class Module:
    name: str
    methods: Mapping[str, Method]
