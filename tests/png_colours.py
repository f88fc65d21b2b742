#!/usr/bin/python3
"""The colours of a screenshot, for the browser checks (tests/test_report_browser.cpp and
examples/notebooks/run_notebooks.py): decodes an 8-bit RGB or RGBA PNG without interlacing using
only the standard library (zlib), so the checks need no image package.

    png_colours.py FILE.png [RRGGBB ...]

prints the number of distinct colours, then "yes" or "no" for each colour given.
"""

import struct
import sys
import zlib


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def colours(path):
    """The set of distinct (r, g, b) byte triples of the PNG at `path`."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    if header is None:
        raise ValueError(f"{path}: no IHDR chunk")
    width, height, depth, colour_type, _, _, interlace = header
    if depth != 8 or colour_type not in (2, 6) or interlace != 0:
        raise ValueError(f"{path}: unsupported PNG layout (depth {depth}, colour type {colour_type})")
    bpp = 3 if colour_type == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    previous, found, i = bytearray(stride), set(), 0
    for _ in range(height):
        kind, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):  # undo the row filter (PNG specification, section 9)
            a = line[x - bpp] if x >= bpp else 0
            b = previous[x]
            c = previous[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                line[x] = (line[x] + _paeth(a, b, c)) & 255
        for x in range(0, stride, bpp):
            found.add(bytes(line[x:x + 3]))
        previous = line
    return found


if __name__ == "__main__":
    found = colours(sys.argv[1])
    print(len(found))
    for wanted in sys.argv[2:]:
        print("yes" if bytes.fromhex(wanted) in found else "no")
