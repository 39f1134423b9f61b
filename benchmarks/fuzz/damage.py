"""The damage every fuzz campaign applies: a case is ["flip", bit index] or ["truncate", size]."""

from __future__ import annotations


def damage(data: bytes, case: list) -> bytes:
    kind, where = case
    if kind == "flip":
        damaged = bytearray(data)
        damaged[where // 8] ^= 1 << (where % 8)
        return bytes(damaged)
    return data[:where]
