"""The project's own errors: each one is a user mistake or a missing input, shown as one
paragraph (what, where, how to fix) with exit code 2 and no traceback."""
from __future__ import annotations


class ErosionError(Exception):
    """Base class: a problem the user can fix. ``str(err)`` is the whole message."""

    exit_code = 2


class ConfigError(ErosionError):
    """A sequence/suite YAML that cannot be loaded or validated."""


class DataError(ErosionError):
    """A dataset that is missing, unreadable or malformed."""


class RegistryError(ConfigError):
    """An unknown method, benchmark, domain or model preset name."""


class StoreError(ErosionError):
    """A results directory that cannot be used."""


def unknown_name_error(kind: str, name: str, known: list[str], where: str = "",
                       guide: str = "docs/write-your-own-method.md") -> RegistryError:
    """One message for every registry lookup miss, listing what exists and where to read how to add one."""
    location = f" in {where}" if where else ""
    return RegistryError(
        f"Unknown {kind} {name!r}{location}. Known {kind}s: {', '.join(sorted(known))}. "
        f"Fix: use one of those names (or register your own; see {guide})."
    )
