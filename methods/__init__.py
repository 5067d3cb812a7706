"""Method registry: built-ins register with ``@register``; installed packages through the entry
point group ``erosion_bench.methods``; anything importable by ``"package.module:Class"`` in YAML."""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from harness.errors import RegistryError, unknown_name_error
from methods.base import Method, MethodConfig, TrainingBlock

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
        found[ep.name] = ep.load()
    return found


def _load_path(spec: str, where: str) -> type[Method]:
    module_name, _, attr = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise RegistryError(f"{where}: cannot import method {spec!r} ({err}). Fix: check the 'module:Class' path and that the package is installed.") from None
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise RegistryError(f"{where}: {spec!r} is not a subclass of methods.base.Method.")
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


# Built-in methods register themselves on import.
from methods import ewc, interleave, no_training, olora, safe_lora, safeanchor, safegrad, standard_lora, vaccine  # noqa: E402,F401

__all__ = ["METHODS", "Method", "MethodConfig", "TrainingBlock", "all_methods", "build_method", "register", "resolve_method"]
