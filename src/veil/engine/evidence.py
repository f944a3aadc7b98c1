"""What a device keeps of a received message so that its user can report it later.

Message franking (:mod:`veil.core.franking`): a report reveals the franked content bytes
exactly as decrypted, the franking key found beside them, and the reporting tag and key id the
server delivered, with the context the tag binds. The sender's device, the server time and
the sender are columns of the message row; the rest is this record, stored (opaque to the
store) with the message and deleted with it when it disappears::

    Evidence {1: content, 2: franking key (32), 3: reporting tag (32, or empty if the
              server sent none), 4: key id, 5: our device id}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from veil.core import protobuf as pb
from veil.core.errors import DecodeError

_FIELDS: Final = {
    1: (pb.LEN, False),
    2: (pb.LEN, False),
    3: (pb.LEN, False),
    4: (pb.VARINT, False),
    5: (pb.VARINT, False),
}


@dataclass(frozen=True, slots=True)
class Evidence:
    """The revealable part of one received message."""

    content: bytes
    franking_key: bytes
    reporting_tag: bytes
    key_id: int
    recipient_device_id: int

    def __repr__(self) -> str:
        return (
            f"Evidence(content=<{len(self.content)} bytes>, franking_key=<hidden>,"
            f" key_id={self.key_id}, recipient_device_id={self.recipient_device_id})"
        )

    def encode(self) -> bytes:
        """The bytes stored with the message."""
        return b"".join(
            (
                pb.field_bytes(1, self.content),
                pb.field_bytes(2, self.franking_key),
                pb.field_bytes(3, self.reporting_tag),
                pb.field_varint(4, self.key_id),
                pb.field_varint(5, self.recipient_device_id),
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> Evidence:
        """Inverse of :meth:`encode`; only :class:`DecodeError`."""
        f = pb.parse(data, _FIELDS)
        key_id, device = f.get(4, 0), f.get(5, 0)
        if not isinstance(key_id, int) or not isinstance(device, int):
            raise DecodeError("bad evidence record")
        return cls(
            pb.get_bytes(f, 1, "content"),
            pb.get_bytes(f, 2, "franking key"),
            pb.opt_bytes(f, 3),
            key_id,
            device,
        )
