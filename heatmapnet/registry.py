"""Registries: a name -> constructor table per kind of component (as timm's model registry).

Each module that defines a kind of component owns its registry (heads in :mod:`heatmapnet.models`,
losses in :mod:`heatmapnet.losses`, sigma policies in :mod:`heatmapnet.targets`, codecs in
:mod:`heatmapnet.codec`, data modes in :mod:`heatmapnet.modes`, optimisers in
:mod:`heatmapnet.optimizers`); a new component is one class with
``@REGISTRY.register("name")`` on it, and :mod:`heatmapnet.build` builds it by the name a config gives.
"""
from __future__ import annotations

from typing import Callable, Dict, Generic, Iterator, List, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names to constructors of one kind (``kind`` names the config key in errors)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@LOSSES.register("focal")`` on a class or function."""
        def add(constructor: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = constructor
            return constructor
        return add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a component registered for a while, as a test's)."""
        del self._entries[name]

    def get(self, name: str) -> T:
        """The constructor registered as ``name``; an unknown name is a :class:`ConfigError` (a
        ``ValueError``) listing the known ones."""
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of {self.names()}") from None

    def names(self) -> List[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
