"""The OpenAPI 3.1 description of ``/v1``, generated from the wire schemas.

Served at ``GET /v1/openapi.json`` and checked in as ``docs/openapi.json`` (a test keeps the
two equal: regenerate with ``python -m veil.server.openapi > docs/openapi.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgspec

import veil
from veil.wire.accounts import AccountInfo, DeviceList, RegisterRequest, RegisterResponse
from veil.wire.attachments import AttachmentCreated
from veil.wire.calls import TurnCredentials
from veil.wire.errors import ErrorBody
from veil.wire.keys import BundleResponse, KeyCounts, KeyUpload
from veil.wire.messages import SendRequest, SendResponse
from veil.wire.provisioning import (
    LinkRequest,
    LinkResponse,
    ProvisioningCode,
    ProvisioningCreated,
    ProvisioningMessage,
)
from veil.wire.reports import ReportRequest, ReportResponse
from veil.wire.social import AccountList, Relationship

BYTES = "application/octet-stream"
"""``body``/``answer`` marker: raw bytes instead of a JSON schema."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One route: method, path, summary, body and answer types, whether it authenticates."""

    method: str
    path: str
    summary: str
    body: type | str | None
    answer: type | str | None
    status: int = 200
    auth: bool = True
    bearer: bool = False
    """Authenticated by a provisioning token (``Authorization: Bearer``) instead."""
    also: tuple[int, ...] = ()
    """Other success statuses (without a body)."""
    query: tuple[tuple[str, dict[str, Any]], ...] = ()
    """Optional query parameters and their schemas."""


OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/v1/health", "Liveness", None, None, auth=False),
    Operation(
        "get", "/v1/ready", "Readiness: the database answers (503 when not)", None, None, auth=False
    ),
    Operation(
        "get", "/metrics", "Prometheus metrics (text exposition format)", None, None, auth=False
    ),
    Operation(
        "post",
        "/v1/accounts",
        "Register an account and its primary device",
        RegisterRequest,
        RegisterResponse,
        201,
        auth=False,
    ),
    Operation("delete", "/v1/accounts/me", "Delete the account", None, None, 204),
    Operation(
        "get", "/v1/accounts/by-username/{username}", "Look up an account", None, AccountInfo
    ),
    Operation("get", "/v1/accounts/{account_id}", "An account by id", None, AccountInfo),
    Operation("get", "/v1/devices", "The account's devices", None, DeviceList),
    Operation("delete", "/v1/devices/{device_id}", "Remove a linked device", None, None, 204),
    Operation("put", "/v1/keys", "Upload prekeys for the calling device", KeyUpload, KeyCounts),
    Operation("get", "/v1/keys/status", "One-time keys left", None, KeyCounts),
    Operation("get", "/v1/keys/{account_id}", "Bundles for all devices", None, BundleResponse),
    Operation(
        "get",
        "/v1/keys/{account_id}/{device_id}",
        "Bundle for one device",
        None,
        BundleResponse,
    ),
    Operation(
        "put",
        "/v1/messages/{account_id}",
        "Send one message as per-device envelopes",
        SendRequest,
        SendResponse,
    ),
    Operation(
        "post",
        "/v1/provisioning",
        "New device: open a provisioning mailbox",
        None,
        ProvisioningCreated,
        201,
        auth=False,
    ),
    Operation(
        "get",
        "/v1/provisioning/{provisioning_id}",
        "New device: take the provisioning message, waiting up to `wait` s (204: none yet)",
        None,
        ProvisioningMessage,
        auth=False,
        bearer=True,
        also=(204,),
        query=(("wait", {"type": "integer", "minimum": 0, "maximum": 30}),),
    ),
    Operation(
        "put",
        "/v1/provisioning/{provisioning_id}",
        "Existing device: put the encrypted provisioning message (at most 64 KiB)",
        ProvisioningMessage,
        None,
        204,
    ),
    Operation(
        "post",
        "/v1/devices/provisioning-code",
        "A single-use linking code for this account (10 minutes)",
        None,
        ProvisioningCode,
        201,
    ),
    Operation(
        "post",
        "/v1/devices/link",
        "New device: link to an account with its code",
        LinkRequest,
        LinkResponse,
        201,
        auth=False,
    ),
    Operation(
        "post",
        "/v1/reports",
        "Report an account, revealing messages it sent to you (message franking); 422"
        " report_invalid {index, reason} if one does not verify, 409 already_reported",
        ReportRequest,
        ReportResponse,
        201,
    ),
    Operation(
        "get",
        "/v1/calls/turn",
        "Short-lived TURN credentials for calls (TURN REST scheme; empty urls: no relay)",
        None,
        TurnCredentials,
    ),
    Operation(
        "post",
        "/v1/attachments",
        "Upload an encrypted attachment (raw bytes)",
        BYTES,
        AttachmentCreated,
        201,
    ),
    Operation("get", "/v1/attachments/{attachment_id}", "An attachment's bytes", None, BYTES),
    Operation(
        "delete",
        "/v1/attachments/{attachment_id}",
        "Delete an attachment this account uploaded",
        None,
        None,
        204,
    ),
    Operation("get", "/v1/follows", "Accounts I follow", None, AccountList),
    Operation(
        "put",
        "/v1/follows/{account_id}",
        "Follow an account (404 if unknown or it blocks me)",
        None,
        None,
        204,
    ),
    Operation("delete", "/v1/follows/{account_id}", "Unfollow an account", None, None, 204),
    Operation("get", "/v1/followers", "Accounts that follow me", None, AccountList),
    Operation(
        "put",
        "/v1/chats/{account_id}",
        "Accept an account's message request (its messages reach my inbox)",
        None,
        None,
        204,
    ),
    Operation(
        "delete",
        "/v1/chats/{account_id}",
        "Decline an account's messages (they become requests again; it is not told)",
        None,
        None,
        204,
    ),
    Operation("get", "/v1/blocks", "Accounts I block", None, AccountList),
    Operation(
        "put",
        "/v1/blocks/{account_id}",
        "Block an account: its queued messages to me are dropped, follows both ways removed",
        None,
        None,
        204,
    ),
    Operation("delete", "/v1/blocks/{account_id}", "Unblock an account", None, None, 204),
    Operation(
        "get",
        "/v1/relationship/{account_id}",
        "Follows, accepted chats and block between me and an account",
        None,
        Relationship,
    ),
)


def _content(kind: type | str, ref: dict[type, Any]) -> dict[str, Any]:
    if isinstance(kind, str):
        return {kind: {"schema": {"type": "string", "format": "binary"}}}
    return {"application/json": {"schema": ref[kind]}}


def _params(op: Operation) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in op.path.split("/") if part.startswith("{")]
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ] + [{"name": n, "in": "query", "required": False, "schema": schema} for n, schema in op.query]


def build() -> dict[str, Any]:
    """The OpenAPI document."""
    types = [t for op in OPERATIONS for t in (op.body, op.answer) if isinstance(t, type)]
    (schemas_for, components) = msgspec.json.schema_components(
        [*types, ErrorBody], ref_template="#/components/schemas/{name}"
    )
    ref = dict(zip([*types, ErrorBody], schemas_for, strict=True))
    error = {"description": "refused", "content": {"application/json": {"schema": ref[ErrorBody]}}}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        ok: dict[str, Any] = {"description": "success"}
        if op.answer is not None:
            ok["content"] = _content(op.answer, ref)
        responses = {str(op.status): ok, "4XX": error}
        responses.update({str(s): {"description": "success, no content"} for s in op.also})
        entry: dict[str, Any] = {
            "summary": op.summary,
            "parameters": _params(op),
            "responses": responses,
        }
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": _content(op.body, ref)}
        if op.auth:
            entry["security"] = [{"device": []}]
        elif op.bearer:
            entry["security"] = [{"provisioning": []}]
        paths.setdefault(op.path, {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Veil server API", "version": veil.__version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "device": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "user = <account_id>.<device_id>, password = credential",
                },
                "provisioning": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the token of POST /v1/provisioning",
                },
            },
        },
    }


def render() -> str:
    """The document as stable, pretty JSON (what ``docs/openapi.json`` holds)."""
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
