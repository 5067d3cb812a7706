"""Finding user code by name, for every registry (methods, benchmarks): the entry points of
installed packages and ``package.module:Class`` paths. Whatever a user's module does on import
becomes one clear :class:`RegistryError` naming where it was asked for and the fix."""
from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from harness.core.errors import RegistryError

CLASS_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


@dataclass(frozen=True)
class PluginKind:
    """One registry's words: what it holds, the base class, its entry point group and its guide."""

    kind: str  # "method", "benchmark": as error messages say it
    base: type
    group: str  # the entry point group, e.g. "erosion_bench.methods"
    example: str  # a 'package.module:Class' path for the fix
    guide: str  # the docs page on writing one


def import_guarded(load: Callable[[], Any], kind: str, what: str, where: str, module: str) -> Any:
    """Run a user module's import: whatever it raises (or a sys.exit in it) becomes one clear error,
    not a traceback, and never ends the command with its own exit code."""
    try:
        return load()
    except (ImportError, AttributeError) as err:
        raise RegistryError(f"{where}: cannot import {kind} {what} ({err}). Fix: check the 'module:Class' path "
                            f"and that the package is installed.") from None
    except SyntaxError as err:
        raise RegistryError(f"{where}: {kind} {what}: {err.filename}, line {err.lineno}: SyntaxError: {err.msg}. "
                            f"Fix: correct that line.") from None
    except SystemExit as err:
        raise RegistryError(f"{where}: importing {kind} {what} called sys.exit({err.code!r}). Fix: remove the "
                            f"module-level exit (put scripts under `if __name__ == \"__main__\":`).") from None
    except Exception as err:  # noqa: BLE001 - any error of a user's module, reported with its text
        raise RegistryError(f"{where}: importing {kind} {what} raised {type(err).__name__}: {str(err)[:300]}. "
                            f"Fix: correct the module (`python -c \"import {module}\"` shows the traceback).") from None


def entry_point_classes(plugin: PluginKind) -> dict[str, type]:
    """Name -> the class each installed package's entry point in ``plugin.group`` names."""
    found = {}
    for ep in entry_points(group=plugin.group):
        where = f"installed package of {ep.value}"
        found[ep.name] = subclass_of_base(plugin, import_guarded(ep.load, plugin.kind, f"entry point {ep.name!r} ({ep.value})",
                                                                 where, ep.module), ep.value, where)
    return found


def load_class_path(plugin: PluginKind, spec: str, where: str) -> type:
    """The class a ``package.module:Class`` path names, checked to be a ``plugin.base`` subclass."""
    if not CLASS_PATH.fullmatch(spec):
        raise RegistryError(f"{where}: {plugin.kind} {spec!r} is neither a registered name nor 'package.module:Class'. "
                            f"Fix: e.g. {plugin.example!r} (see {plugin.guide}).")
    module_name, _, attr = spec.partition(":")
    cls = import_guarded(lambda: getattr(importlib.import_module(module_name), attr), plugin.kind, repr(spec), where,
                         module_name)
    return subclass_of_base(plugin, cls, spec, where)


def subclass_of_base(plugin: PluginKind, found: Any, spec: str, where: str) -> type:
    if not (isinstance(found, type) and issubclass(found, plugin.base)):
        base = f"{plugin.base.__module__}.{plugin.base.__qualname__}"
        raise RegistryError(f"{where}: {spec!r} is not a subclass of {base}. Fix: point at your "
                            f"{plugin.base.__name__} subclass.")
    return found
