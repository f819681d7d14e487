"""``python -m proxy.cli``: the same command as the ``oneroster-proxy`` console script."""

from __future__ import annotations

from proxy.cli import main

main()
