"""`python -m rsneo.cli ...` runs the `rsneo` command."""

from rsneo.cli.app import main

main()
