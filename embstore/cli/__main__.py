"""``python -m embstore.cli``: the embstore command."""

from embstore.cli import main

main()
