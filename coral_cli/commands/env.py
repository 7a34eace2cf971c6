"""`coral env`: versions, the device `--device auto` picks, and where data and assets are found."""

from __future__ import annotations

from typing import Any

from coral_cli.commands.console import out, print_json
from coral_cli.commands.options import Device, Json


def env(device: Device = None, json: Json = False) -> None:
    """Show versions, the device a run would use, and where data and assets are found."""
    from coral_cli.environment import environment_report

    report = environment_report(device or "auto")
    if json:
        print_json(report)
        return
    _render(report)


def _render(report: dict[str, Any]) -> None:
    from rich.table import Table

    for title, section in report.items():
        table = Table(title=title, show_header=False, title_justify="left", title_style="bold")
        table.add_column(style="cyan")
        table.add_column(overflow="fold")
        for key, value in section.items():
            table.add_row(key, "-" if value is None else str(value))
        out.print(table)
