"""``python -m proxy.sandbox``: the same as ``oneroster-proxy sandbox``."""

from __future__ import annotations

import sys

from proxy.sandbox.server import run_sandbox_cli

if __name__ == "__main__":
    sys.exit(run_sandbox_cli(sys.argv[1:]))
