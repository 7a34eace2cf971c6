"""Slash commands that change chat settings in the app: `/n 6`, `/top_p 0.8`, `/rerank off`, ..."""

from __future__ import annotations

from coral_cli.chat.session import ChatSession

SETTERS = {
    "/n": ("n", int, 1, 16),
    "/top_p": ("top_p", float, 0.0, 1.0),
    "/temp": ("temperature", float, 0.01, 5.0),
    "/max": ("max_new_tokens", int, 1, 128),
    "/margin": ("margin", float, 0.0, 1.0),
}


def apply_command(session: ChatSession, text: str) -> str:
    """Change a setting; returns a confirmation ('' for /help). Bad input raises ValueError."""
    name, _, arg = text.strip().partition(" ")
    arg = arg.strip()
    s = session.settings
    if name == "/help":
        return ""
    if name == "/strategy":
        if arg not in ("greedy", "beam", "nucleus"):
            raise ValueError("strategy must be greedy, beam or nucleus")
        s.strategy = arg
        return f"strategy {arg}"
    if name == "/rerank":
        if arg not in ("on", "off"):
            raise ValueError("use /rerank on or /rerank off")
        s.rerank = arg == "on"
        session.rescore()
        return f"rerank {arg}"
    if name not in SETTERS:
        raise ValueError(f"unknown command {name}; try /help")
    field, kind, lo, hi = SETTERS[name]
    try:
        value = kind(arg)
    except ValueError:
        raise ValueError(f"{name} needs a {kind.__name__}") from None
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be within [{lo}, {hi}]")
    setattr(s, field, value)
    if field == "margin":
        session.rescore()
    return f"{field} = {value}"
