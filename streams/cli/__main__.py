"""``python -m streams.cli`` runs the ``ctriage`` command."""

from streams.cli.root import main

main()
