"""Checks on the window's screenshots (8-bit RGBA PNG, as poolscope saves them).

  png_check.py not-blank PNG   more than a handful of distinct colours
  png_check.py red PNG         terminal red text drawn in the console (the lower third)
"""
import struct
import sys
import zlib


def read_png(path):
    data = open(path, 'rb').read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
    pos, idat, width, height = 8, b'', 0, 0
    while pos < len(data):
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b'IHDR':
            width, height, depth, colour = struct.unpack('>IIBB', body[:10])
            assert depth == 8 and colour == 6, 'expected 8-bit RGBA'
        elif kind == b'IDAT':
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * 4
    rows, prev = [], bytearray(stride)
    for r in range(height):
        kind = raw[r * (stride + 1)]
        line = bytearray(raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - 4] if i >= 4 else 0
            b = prev[i]
            c = prev[i - 4] if i >= 4 else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        rows.append(line)
        prev = line
    return width, height, rows


def main():
    check, path = sys.argv[1], sys.argv[2]
    width, height, rows = read_png(path)
    if check == 'not-blank':
        colours = {bytes(rows[r][c * 4:c * 4 + 3])
                   for r in range(0, height, 7) for c in range(0, width, 7)}
        print(f'{width}x{height}, {len(colours)} distinct colours sampled')
        sys.exit(0 if width >= 640 and len(colours) > 8 else 1)
    if check == 'red':
        red = sum(1 for r in range(height * 2 // 3, height) for c in range(width)
                  if rows[r][c * 4] >= 170 and rows[r][c * 4 + 1] <= 80
                  and rows[r][c * 4 + 2] <= 80)
        print(f'{red} red pixels in the console')
        sys.exit(0 if red >= 30 else 1)
    sys.exit(f'unknown check {check}')


main()
