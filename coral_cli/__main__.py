"""`python -m coral_cli ...` (what `torchrun -m coral_cli coral train ...` runs on each rank)."""

from coral_cli.commands.app import main

main()
