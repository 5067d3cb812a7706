"""Method registry: built-ins register with ``@register``; installed packages through the entry
point group ``erosion_bench.methods``; anything importable by ``"package.module:Class"`` in YAML
(the lookups shared with benchmarks: ``harness/core/plugins.py``).

A suite's method entry may name a variant row, ``name[field=value, ...]`` (e.g.
``safeanchor[alpha_traces=relative]``): the method with those config fields. The whole entry is the
run's method label, so a suite can run a method twice under two configs as two rows."""
from __future__ import annotations

import re
from typing import Any

import yaml

from harness.core.errors import RegistryError, unknown_name_error
from harness.core.plugins import PluginKind, entry_point_classes, load_class_path
from methods.base import Method, MethodConfig

ENTRY_POINT_GROUP = "erosion_bench.methods"
PLUGIN = PluginKind("method", Method, ENTRY_POINT_GROUP, "my_methods.replay:Replay", "docs/write-your-own-method.md")
METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    if not cls.name:
        raise TypeError(f"{cls.__qualname__} needs a class attribute `name`")
    METHODS[cls.name] = cls
    return cls


VARIANT = re.compile(r"(?P<base>[^\[\]]+)\[(?P<fields>[^\[\]]*)\]")


def _scalar(text: str) -> Any:
    """A field value as YAML reads it (a number, true/false, a word); ``2e-4`` is a number."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 2e-4 as a string
        except ValueError:
            return value
    return value


def split_variant(label: str, where: str = "") -> tuple[str, dict[str, Any]]:
    """``name[field=value, ...]`` -> (name, {field: value}); a plain name -> (name, {})."""
    match = VARIANT.fullmatch(label.strip())
    if match is None:
        if "[" in label or "]" in label:
            raise RegistryError(f"{where}: method entry {label!r} is not of the form name[field=value, ...]. "
                                f"Fix: e.g. 'safeanchor[alpha_traces=relative]'.")
        return label, {}
    fields: dict[str, Any] = {}
    for item in match["fields"].split(","):
        key, equals, value = (part.strip() for part in item.partition("="))
        if not (key and equals and value) or key in fields:
            raise RegistryError(f"{where}: method entry {label!r}: {item.strip()!r} is not one new field=value. "
                                f"Fix: write name[field=value, field2=value2], each field once.")
        fields[key] = _scalar(value)
    return match["base"].strip(), fields


def all_methods() -> dict[str, type[Method]]:
    return {**entry_point_classes(PLUGIN), **METHODS}


def resolve_method(name: str, where: str = "") -> type[Method]:
    """The class of a method name, ``module:Class`` path or variant row ``name[field=value]``."""
    name = split_variant(name, where)[0]
    if ":" in name:
        return load_class_path(PLUGIN, name, where)
    known = all_methods()
    if name not in known:
        raise unknown_name_error("method", name, list(known), where, PLUGIN.guide)
    return known[name]


def build_method(name: str, fields: dict | None = None, where: str = "") -> Method:
    """The method of a suite entry, configured by ``fields`` and, for a variant row, the fields its
    label names (the label wins: it must describe the run truthfully)."""
    return resolve_method(name, where)(method_config(name, fields, where))


def method_config(name: str, fields: dict | None = None, where: str = "") -> MethodConfig:
    """The whole config a suite entry runs under: its class's defaults, ``fields``, then its label's."""
    return resolve_method(name, where).make_config({**(fields or {}), **split_variant(name, where)[1]}, where)
