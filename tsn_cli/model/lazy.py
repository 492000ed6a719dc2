"""Module-level lazy classes: paddle Layer subclasses are created on first access, so importing a model module
(for example from `tsn --help` or the config code) never imports paddle."""

from __future__ import annotations

from typing import Callable


def lazy_getattr(module_globals: dict, names: tuple[str, ...], build: Callable[[], dict]):
    """Return a module `__getattr__` that builds `names` with `build()` on first access and caches them."""

    def __getattr__(name: str):
        if name in names:
            classes = build()
            module_globals.update(classes)
            return classes[name]
        raise AttributeError(f"module {module_globals['__name__']!r} has no attribute {name!r}")

    return __getattr__
