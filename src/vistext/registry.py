"""Named constructors. Saved models store a registered name, never a Python import path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from vistext.errors import ModelError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names such as ``efficientnet-lite0`` or ``vse-hardest`` to constructors of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._makers: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def add(maker: Callable[..., T]) -> Callable[..., T]:
            if name in self._makers:
                raise ModelError(f"{self.kind} {name!r} is registered twice")
            self._makers[name] = maker
            return maker

        return add

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._makers[name]
        except KeyError:
            known = ", ".join(sorted(self._makers)) or "none"
            raise ModelError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def create(self, name: str, **kwargs: object) -> T:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._makers)

    def __contains__(self, name: object) -> bool:
        return name in self._makers
