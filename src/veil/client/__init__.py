"""The client SDK: :class:`Client` (one device profile talking to one server).

The public surface is :class:`Client` and its events; underneath, ``http``
(:class:`~veil.client.http.HttpApi`), ``socket`` (:class:`~veil.client.socket.DeviceSocket`)
and ``connection`` (:class:`~veil.client.connection.Connection`) move the :mod:`veil.wire`
schemas to and from the server and do no protocol cryptography; :mod:`veil.engine` does that.
Failures are :mod:`veil.client.errors`.
"""

from veil.client.attachments import AttachmentInvalidError, AttachmentTooLargeError
from veil.client.call_history import describe_call, describe_call_log
from veil.client.calls_call import Call, CallEndedError, IncomingCall
from veil.client.client import CaughtUp, Client, ClientEvent, SendResult
from veil.client.errors import ClientError, ServerError, TransportError
from veil.client.timers import describe_timer, parse_timer
from veil.engine import (
    ConversationChanged,
    DecryptFailure,
    DeviceAdded,
    IdentityChanged,
    MessageReceived,
    ReceiptReceived,
    SessionReset,
    StoreError,
    SyncedSent,
    TimerChanged,
    TypingChanged,
)

__all__ = [
    "AttachmentInvalidError",
    "AttachmentTooLargeError",
    "Call",
    "CallEndedError",
    "CaughtUp",
    "Client",
    "ClientError",
    "ClientEvent",
    "ConversationChanged",
    "DecryptFailure",
    "DeviceAdded",
    "IdentityChanged",
    "IncomingCall",
    "MessageReceived",
    "ReceiptReceived",
    "SendResult",
    "ServerError",
    "SessionReset",
    "StoreError",
    "SyncedSent",
    "TimerChanged",
    "TransportError",
    "TypingChanged",
    "describe_call",
    "describe_call_log",
    "describe_timer",
    "parse_timer",
]
