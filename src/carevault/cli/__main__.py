"""``python -m carevault.cli``: the ``carevault`` command (how tests and the attack lab run a
fresh process without relying on the installed script)."""

import sys

from carevault.cli import main

if __name__ == "__main__":
    sys.exit(main())
