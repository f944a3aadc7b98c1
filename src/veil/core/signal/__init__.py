"""The Signal protocol: PQXDH, the Double Ratchet, libsignal's wire messages, safety numbers.

Specifications: "The PQXDH Key Agreement Protocol" (rev. 3), "The Double Ratchet Algorithm"
(rev. 4), "The XEdDSA and VXEdDSA Signature Schemes" (rev. 1), all at signal.org/docs; the
byte-level details libsignal 0.90.0 uses are summarised in ../shared/interop/libsignal/WIRE.md.
"""
