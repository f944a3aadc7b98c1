"""MLS, the Messaging Layer Security protocol (RFC 9420): the sans-I/O core.

Each device is a leaf of a group's ratchet tree. The modules follow the RFC:

* ``codec`` -- TLS presentation language (§2.1);
* ``suite`` -- cipher suites and the labelled crypto of §5 (on ``veil.core.crypto.hpke``);
* ``tree_math`` -- array-based trees (Appendix C);
* ``structs`` -- the wire structs (credentials, leaf nodes, key packages, proposals,
  commits, framing, Welcome and GroupInfo);
* ``key_schedule``, ``secret_tree``, ``psk``, ``transcript`` -- §8, §9, §8.4, §8.2;
* ``tree`` and ``treekem`` -- the ratchet tree, its hashes and validation, TreeKEM (§4, §7);
* ``framing`` -- PublicMessage and PrivateMessage protection (§6);
* ``vectors`` -- ``python -m veil.core.mls.vectors FILE...`` runs the official test vectors.
"""
