"""Packages whose names load on first use (PEP 562), so that `import dinokit` and the command line's
parser cost no torch, pyarrow or faiss until a model or a job is touched."""
from __future__ import annotations

import importlib
import sys
import types


class _LazyPackage(types.ModuleType):
    """A package whose exported names keep their meaning when a submodule of the same name is imported
    (`curate.dedup` stays the function, as with eager `from .dedup import dedup`): the import system's
    setting of the submodule as an attribute is ignored for those names."""

    def __setattr__(self, name, value):
        if (isinstance(value, types.ModuleType) and name in vars(self).get("_lazy_exports", ())
                and value.__name__ == f"{self.__name__}.{name}"):
            return
        super().__setattr__(name, value)


def lazy_exports(package: str, modules: dict[str, list[str]]):
    """`__getattr__` and `__dir__` for `package`: each name listed under a module (relative to the package)
    comes from it when first asked for, then stays; a submodule's name imports the submodule."""
    exports = {name: module for module, names in modules.items() for name in names}
    module = sys.modules[package]
    module.__class__ = _LazyPackage
    module._lazy_exports = exports

    def __getattr__(name: str):
        if name in exports:
            value = getattr(importlib.import_module(exports[name], package), name)
        else:
            try:
                value = importlib.import_module(f".{name}", package)
            except ModuleNotFoundError as e:
                if e.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(exports))

    return __getattr__, __dir__
