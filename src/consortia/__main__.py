"""``python -m consortia`` = the ``consortia`` command."""

from consortia.cli import main

main()
