"""`coral plugins`: every reward model and sampler, its origin and one line of help."""

from __future__ import annotations

from dataclasses import asdict

from coral_cli.commands.console import out, print_json
from coral_cli.commands.options import Json


def plugins(json: Json = False) -> None:
    """List reward models and samplers registered through entry points (or register())."""
    from coral_cli.registry import REWARDS, SAMPLERS

    infos = [i for reg in (REWARDS, SAMPLERS) for i in reg.infos()]
    if json:
        print_json([asdict(i) for i in infos])
        return
    from rich.table import Table

    table = Table(title="coral plugins", title_justify="left")
    for col in ("kind", "name", "origin", "help"):
        table.add_column(col, overflow="fold")
    for i in infos:
        table.add_row(i.kind, f"[bold]{i.name}[/]", i.origin, i.help)
    out.print(table)
