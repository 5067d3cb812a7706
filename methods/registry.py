"""Method registry: built-ins register with ``@register``; installed packages through the entry
point group ``erosion_bench.methods``; anything importable by ``"package.module:Class"`` in YAML."""
from __future__ import annotations

import importlib
import re
from importlib.metadata import entry_points
from typing import Any, Callable

from harness.core.errors import RegistryError, unknown_name_error
from methods.base import Method

ENTRY_POINT_GROUP = "erosion_bench.methods"
METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    if not cls.name:
        raise TypeError(f"{cls.__qualname__} needs a class attribute `name`")
    METHODS[cls.name] = cls
    return cls


def _load_entry_points() -> dict[str, type[Method]]:
    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = _import_guarded(ep.load, f"entry point {ep.name!r} ({ep.value})", f"installed package of {ep.value}", ep.module)
    return found


METHOD_SPEC = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


def _import_guarded(load: Callable[[], Any], what: str, where: str, module: str) -> Any:
    """Run a user module's import: whatever it raises (or a sys.exit in it) becomes one clear error,
    not a traceback, and never ends the command with its own exit code."""
    try:
        return load()
    except (ImportError, AttributeError) as err:
        raise RegistryError(f"{where}: cannot import method {what} ({err}). Fix: check the 'module:Class' path "
                            f"and that the package is installed.") from None
    except SyntaxError as err:
        raise RegistryError(f"{where}: method {what}: {err.filename}, line {err.lineno}: SyntaxError: {err.msg}. "
                            f"Fix: correct that line.") from None
    except SystemExit as err:
        raise RegistryError(f"{where}: importing method {what} called sys.exit({err.code!r}). Fix: remove the "
                            f"module-level exit (put scripts under `if __name__ == \"__main__\":`).") from None
    except Exception as err:  # noqa: BLE001 - any error of a user's module, reported with its text
        raise RegistryError(f"{where}: importing method {what} raised {type(err).__name__}: {str(err)[:300]}. "
                            f"Fix: correct the module (`python -c \"import {module}\"` shows the traceback).") from None


def _load_path(spec: str, where: str) -> type[Method]:
    if not METHOD_SPEC.fullmatch(spec):
        raise RegistryError(f"{where}: method {spec!r} is neither a registered name nor 'package.module:Class'. "
                            f"Fix: e.g. 'my_methods.replay:Replay' (see docs/write-your-own-method.md).")
    module_name, _, attr = spec.partition(":")
    cls = _import_guarded(lambda: getattr(importlib.import_module(module_name), attr), repr(spec), where, module_name)
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise RegistryError(f"{where}: {spec!r} is not a subclass of methods.base.Method. Fix: point at your Method subclass.")
    return cls


def all_methods() -> dict[str, type[Method]]:
    return {**_load_entry_points(), **METHODS}


def resolve_method(name: str, where: str = "") -> type[Method]:
    if ":" in name:
        return _load_path(name, where)
    known = all_methods()
    if name not in known:
        raise unknown_name_error("method", name, list(known), where)
    return known[name]


def build_method(name: str, fields: dict | None = None, where: str = "") -> Method:
    cls = resolve_method(name, where)
    return cls(cls.make_config(fields, where))
