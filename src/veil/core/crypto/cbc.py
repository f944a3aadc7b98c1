"""AES-256-CBC with PKCS#7 padding (pyca), the Signal message body cipher (WIRE.md §3.4).

Authentication is separate (HMAC-SHA256 over the whole message, see ``veil.core.signal.wire``);
:func:`decrypt` is only called after that MAC verified, and still refuses bad padding with
:class:`DecodeError`.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from veil.core.errors import DecodeError

_BLOCK = 16


def encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """AES-256-CBC(key, iv, PKCS7(plaintext)); an empty plaintext gives one block."""
    pad = _BLOCK - len(plaintext) % _BLOCK
    enc = Cipher(algorithms.AES256(key), modes.CBC(iv)).encryptor()
    return enc.update(plaintext + bytes((pad,)) * pad) + enc.finalize()


def decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Inverse of :func:`encrypt`; :class:`DecodeError` on bad length or padding."""
    if not ciphertext or len(ciphertext) % _BLOCK:
        raise DecodeError("CBC ciphertext length is not a positive multiple of 16")
    dec = Cipher(algorithms.AES256(key), modes.CBC(iv)).decryptor()
    padded = dec.update(ciphertext) + dec.finalize()
    pad = padded[-1]
    if not 1 <= pad <= _BLOCK or padded[-pad:] != bytes((pad,)) * pad:
        raise DecodeError("bad PKCS#7 padding")
    return padded[:-pad]
