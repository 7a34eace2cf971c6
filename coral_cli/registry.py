"""Plugins by name: one small registry per kind, filled lazily from package entry points.

Built-in reward models and samplers take the same path as a third-party package: an entry
point in group `coral.rewards` / `coral.samplers` naming a class. `register()` adds one in
code (tests, notebooks).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, TypeVar

from coral_cli.errors import CoralError

T = TypeVar("T")


class PluginError(CoralError):
    """An unknown, duplicate or broken plugin."""


@dataclass(frozen=True)
class PluginInfo:
    """What `coral plugins` lists."""

    kind: str
    name: str
    origin: str
    help: str


class Registry(Generic[T]):
    """Name -> plugin class for one `group` of entry points; loads a plugin only when asked."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind, self.group = kind, group
        self._loaded: dict[str, tuple[T, str]] = {}
        self._entry_points: dict[str, metadata.EntryPoint] | None = None

    def register(self, name: str, obj: T, origin: str = "register()", replace: bool = False) -> T:
        """Add `obj` under `name`; a second plugin of the same name is an error unless `replace`."""
        if not replace and (name in self._loaded or name in self._discover()):
            raise PluginError(f"duplicate {self.kind} name '{name}'", "pick another name or pass replace=True")
        self._loaded[name] = (obj, origin)
        return obj

    def unregister(self, name: str) -> None:
        self._loaded.pop(name, None)

    def get(self, name: str) -> T:
        """The plugin called `name`; unknown names list the known ones with a "did you mean"."""
        if name not in self._loaded:
            self.check(name)
            ep = self._discover()[name]
            try:
                obj = ep.load()
            except Exception as exc:  # a broken third-party plugin must not look like our bug
                raise PluginError(f"{self.kind} '{name}' ({ep.value}) failed to load: {exc}",
                                  "reinstall or remove the package that provides it") from exc
            self._loaded[name] = (obj, _origin(ep))
        return self._loaded[name][0]

    def check(self, name: str, key: str = "") -> None:
        """Fail early on an unknown name (without importing the plugin); `key` names its config key."""
        known = self.names()
        if name in known:
            return
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        where = f" ({key})" if key else ""
        raise PluginError(f"unknown {self.kind} '{name}'{where}",
                          f"{hint}available: {', '.join(known) or 'none'} (see 'coral plugins')")

    def names(self) -> list[str]:
        return sorted(set(self._loaded) | set(self._discover()))

    def infos(self) -> list[PluginInfo]:
        """Every plugin with its origin and the first line of its docstring (loads them all)."""
        out = []
        for name in self.names():
            obj = self.get(name)
            doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
            out.append(PluginInfo(self.kind, name, self._loaded[name][1], doc[0] if doc else ""))
        return out

    def _discover(self) -> dict[str, metadata.EntryPoint]:
        if self._entry_points is None:
            found: dict[str, metadata.EntryPoint] = {}
            for ep in metadata.entry_points(group=self.group):
                if ep.name in found and found[ep.name].value != ep.value:
                    raise PluginError(
                        f"duplicate {self.kind} name '{ep.name}': {found[ep.name].value} and {ep.value}",
                        "uninstall one of the packages that provide it",
                    )
                found[ep.name] = ep
            self._entry_points = found
        return self._entry_points


def _origin(ep: metadata.EntryPoint) -> str:
    dist: Any = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else ep.value


REWARDS: Registry[Any] = Registry("reward model", "coral.rewards")
SAMPLERS: Registry[Any] = Registry("sampler", "coral.samplers")
