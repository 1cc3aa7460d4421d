"""Convert an authors' release checkpoint (checkpoint.th or *_best.th) into the project's safe
format: `python scripts/import_official.py IN.th OUT.pt [--overwrite]`.

The release file is read with an allow-list unpickler; nothing in it is executed. It is never
overwritten, nor is an existing OUT.pt without --overwrite. A bad file ends with one line
`error: ...` (status 2).
"""

from __future__ import annotations

import argparse

from aeromamba.checkpoint import import_official
from aeromamba.cli import entry_point


@entry_point
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="release checkpoint (.th)")
    parser.add_argument("dest", help="output checkpoint in the project's format (.pt)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dest")
    args = parser.parse_args()
    package = import_official(args.source, args.dest, overwrite=args.overwrite)
    kwargs = package["generator"]["kwargs"]
    parts = ["generator"] + (["discriminator"] if "discriminator" in package else [])
    mamba = "none" if kwargs["dconv_mamba"] >= len(kwargs["strides"]) else "constructed, not run"
    print(f"wrote {args.dest}: {' + '.join(parts)}; channels={kwargs['channels']}, Mamba: {mamba}")
    return 0


if __name__ == "__main__":
    main()
