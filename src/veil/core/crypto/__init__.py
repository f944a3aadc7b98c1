"""Thin typed wrappers over pyca ``cryptography`` and PyNaCl (libsodium).

Nothing here implements a cipher, curve or hash; each module adapts one library primitive to the
encodings and rules of the protocols Veil speaks.
"""
