"""Attack payloads of ``test_rel_hardening.py``, built in milliseconds, and peak-RSS probes.

The compression bombs are written by hand rather than compressed: one fixed-Huffman deflate block
of length-258, distance-1 matches (8 matches = 13 bytes = 2064 output bytes) makes a stream of
any inflated size instantly, where compressing 2 GiB of zeros takes ~15 s of CPU.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path


def _bits(fields: list[tuple[int, int, bool]]) -> tuple[bytes, int]:
    """Pack (value, width, huffman) fields LSB-first; Huffman codes go most significant bit first."""
    value = nbits = 0
    for code, width, huffman in fields:
        if huffman:
            code = int(f"{code:0{width}b}"[::-1], 2)
        value |= code << nbits
        nbits += width
    return value.to_bytes((nbits + 7) // 8, "little"), nbits


_HEADER = [(1, 1, False), (1, 2, False)]  # BFINAL, BTYPE=01 (fixed Huffman)
_MATCH_258 = [(0b11000101, 8, True), (0, 5, True)]  # length 258 (symbol 285), distance 1
_LIT_0 = (0b00110000, 8, True)  # literal 0x00
_LIT_90 = (0b110010000, 9, True)  # literal 0x90
_EOB = (0, 7, True)


def deflate_of_0x90(n_out: int) -> tuple[bytes, int]:
    """(raw deflate stream, inflated size ~ ``n_out``) of the byte 0x90 repeated."""
    prefix, n = _bits([*_HEADER, *[_LIT_90] * 5])  # 48 bits: the matches start byte-aligned
    pattern, m = _bits(_MATCH_258 * 8)  # 104 bits = 13 bytes
    assert n == 48 and m == 104
    count = max(1, (n_out - 5) // 2064)
    return prefix + pattern * count + _bits([_EOB])[0], 5 + 2064 * count


def zlib_of_zeros(n_out: int) -> bytes:
    """A zlib stream inflating to exactly ``n_out`` zero bytes (valid Adler-32)."""
    prefix, n = _bits([*_HEADER, _LIT_0, *_MATCH_258])  # 24 bits, 259 bytes out
    pattern, _ = _bits(_MATCH_258 * 8)
    assert n == 24 and n_out >= 259
    count = (n_out - 259) // 2064
    rest = n_out - 259 - 2064 * count
    tail, _ = _bits([_LIT_0] * rest + [_EOB])
    adler = ((n_out % 65521) << 16) | 1
    return b"\x78\x01" + prefix + pattern * count + tail + struct.pack(">I", adler)


def gzip_member(raw_deflate: bytes, size: int) -> bytes:
    """A gzip member around a raw deflate stream. The CRC is left 0: the readers under test must
    refuse long before the trailer, and computing it over gigabytes would cost seconds."""
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + raw_deflate + struct.pack("<II", 0, size & 0xFFFFFFFF)


def gzip_bomb(n_out: int = 2 << 30) -> bytes:
    """One gzip layer over ``n_out`` bytes (13.5 MB on the wire for 2 GiB)."""
    return gzip_member(*deflate_of_0x90(n_out))


def stacked_gzip_bomb(layers: int = 3, n_out: int = 2 << 30) -> bytes:
    """``layers`` gzip layers over 2 GiB: a couple of hundred bytes on the wire."""
    import gzip

    body = gzip_bomb(n_out)
    for _ in range(layers - 1):
        body = gzip.compress(body, 9, mtime=0)
    return body


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(side: int = 8192) -> bytes:
    """A valid RGB PNG that declares ``side`` x ``side`` (all black): ~1.3 MB for 8192."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib_of_zeros(side * (1 + 3 * side))
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def many_frame_gif(frames: int = 870_000) -> bytes:
    """A GIF of ``frames`` 1x1 frames (23 bytes each: ~20 MB for 870k)."""
    head = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = (
        b"\x21\xf9\x04\x00\x00\x00\x00\x00"  # graphic control extension
        + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)  # image descriptor
        + b"\x02\x02\x44\x01\x00"  # LZW min code size 2; one sub-block; terminator
    )  # fmt: skip
    return head + frame * frames + b"\x3b"


def vm_bytes(pid: int, field: str) -> int:
    """``VmRSS`` / ``VmHWM`` (peak RSS) of process ``pid`` in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    assert found is not None, field
    return int(found.group(1)) * 1024


def reset_peak(pid: int) -> int:
    """Reset ``pid``'s peak RSS to its current RSS (Linux ``clear_refs`` 5); returns that RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return vm_bytes(pid, "VmHWM")


MB = 1024 * 1024
