"""Convert an authors' release checkpoint (checkpoint.th or *_best.th) into the project's safe
format: `python scripts/import_official.py IN.th OUT.pt`.

The release file is read with an allow-list unpickler; nothing in it is executed.
"""

from __future__ import annotations

import argparse
import sys

from aeromamba.checkpoint import CheckpointError, import_official


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="release checkpoint (.th)")
    parser.add_argument("dest", help="output checkpoint in the project's format (.pt)")
    args = parser.parse_args()
    try:
        package = import_official(args.source, args.dest)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    kwargs = package["generator"]["kwargs"]
    parts = ["generator"] + (["discriminator"] if "discriminator" in package else [])
    mamba = "none" if kwargs["dconv_mamba"] >= len(kwargs["strides"]) else "constructed, not run"
    print(f"wrote {args.dest}: {' + '.join(parts)}; channels={kwargs['channels']}, Mamba: {mamba}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
