"""Drivers that expose Veil's protocol core over JSON lines for interop tests.

They speak the same protocol as the libsignal peer in ``../shared/interop/libsignal`` so a test
can pair Veil with libsignal, or Veil with Veil, through one interface. Imports ``veil.core`` only.
"""
