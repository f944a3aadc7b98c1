"""The RFC 9420 wire structs, one module per area of the RFC.

* ``common`` -- versions, suite ids, extensions, capabilities, lifetimes, credentials (§5.3,
  §7.2, §13), HPKECiphertext;
* ``tree`` -- LeafNode, ParentNode, Node, UpdatePath, the ratchet_tree extension (§7, §12.4.3.3);
* ``key_package`` -- KeyPackage (§10);
* ``proposals`` -- every proposal of §12.1 and ProposalOrRef (§12.4);
* ``commit`` -- Commit (§12.4);
* ``framing`` -- MLSMessage (§6), re-exporting every framing struct from
  ``framed_content`` (Sender, FramedContent, FramedContentAuthData; §6, §6.1),
  ``public_message`` (AuthenticatedContent, PublicMessage; §6.1-6.2, §8.2) and
  ``private_message`` (PrivateMessage, PrivateMessageContent, SenderData; §6.3);
* ``group`` -- GroupContext (§8.1), GroupInfo, GroupSecrets, Welcome (§12.4.3).

Every struct is a frozen slotted dataclass with ``encode(w)``, ``decode(r)``, ``to_bytes()``
and ``from_bytes(data)``; decoding raises only :class:`~veil.core.errors.DecodeError`.
"""
