"""Client <-> server schemas (ARCHITECTURE.md §2): requests, responses, errors, envelopes.

msgspec Structs, JSON over HTTP (bytes travel as standard base64). This layer imports nothing
else of Veil, so the server and the client agree on one definition. Every Struct refuses
unknown fields and out-of-range values at decode time: untrusted input becomes a typed value
only through :func:`decode`, which raises :class:`WireError` for anything malformed.
"""

from veil.wire.codec import WireError, decode, encode

__all__ = ["WireError", "decode", "encode"]
