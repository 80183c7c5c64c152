#!/usr/bin/env python3
"""tools/vm/virtio-image.py seed IMAGE | check IMAGE SCENARIO: the virtio-blk scenarios' disk.

seed:  a 4 MiB raw image, every 512-byte sector filled from its LBA.
check: after the VM: the sectors the scenario writes (WRITTEN; none for
       virtio-blk-contains, which only reads) hold the new pattern, every
       other sector the seed. Prints one line; exit 1 on
       any difference.
The patterns and WRITTEN are those of virtio-driver/src/main.rs (`seed`,
`fresh`, `WRITTEN`): keep them in step.
"""
import struct
import sys

SECTOR = 512
SECTORS = 8192
WRITTEN = [(100, 8), (301, 1), (517, 3)]
# Scenarios that write nothing.
READ_ONLY = {"virtio-blk-contains"}


def sector(lba, head, mul, mod):
    return struct.pack("<Q", head) + bytes((lba * mul + i) % mod for i in range(8, SECTOR))


def seed(lba):
    return sector(lba, lba, 7, 251)


def fresh(lba):
    return sector(lba, ~lba & (2**64 - 1), 13, 241)


def main():
    what, path = sys.argv[1], sys.argv[2]
    if what == "seed":
        with open(path, "wb") as f:
            f.write(b"".join(seed(lba) for lba in range(SECTORS)))
        return 0
    ranges = [] if sys.argv[3] in READ_ONLY else WRITTEN
    written = {lba for (first, n) in ranges for lba in range(first, first + n)}
    data = open(path, "rb").read()
    if len(data) != SECTORS * SECTOR:
        print(f"image is {len(data)} bytes, want {SECTORS * SECTOR}")
        return 1
    bad = []
    for lba in range(SECTORS):
        want = fresh(lba) if lba in written else seed(lba)
        if data[lba * SECTOR:(lba + 1) * SECTOR] != want:
            bad.append(lba)
    if bad:
        print(f"{len(bad)} sectors differ from what the scenario wrote or the seed, first LBAs {bad[:8]}")
        return 1
    print(f"all {SECTORS} sectors as expected ({len(written)} written, the rest seeded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
