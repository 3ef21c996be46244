"""The ``gridsim`` console script: Ctrl-C while the libraries load ends quietly, too."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from gridsim.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: nothing was written\n")
        raise SystemExit(130) from None
    cli_main()
