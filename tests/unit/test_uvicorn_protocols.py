"""The installed uvicorn and websockets still have every attribute server/uvicorn_protocols.py relies on, and
its docstring lists each of them."""

from __future__ import annotations

from medstream.server import uvicorn_protocols
from medstream.server.uvicorn_protocols import RELIED_ON, RELIED_ON_PARAMETERS, has_attribute, missing_attributes


def test_the_installed_libraries_have_every_attribute_the_adaptations_rely_on() -> None:
    missing = missing_attributes()
    assert not missing, (
        "the installed uvicorn/websockets lack what server/uvicorn_protocols.py relies on: "
        + ", ".join(missing)
        + " (adapt the module, or pin the version range in pyproject.toml to the tested one)"
    )


def test_a_missing_attribute_or_parameter_is_named() -> None:
    class Library:
        def __init__(self, kept: int) -> None:
            self.assigned = kept

        def method(self) -> None:
            pass

    assert has_attribute(Library, "method") and has_attribute(Library, "assigned")
    missing = missing_attributes({Library: ("method", "assigned", "renamed")}, {Library: ("kept", "dropped")})
    where = f"{Library.__module__}.{Library.__qualname__}"
    assert missing == [f"{where}.renamed", f"{where}(dropped=...)"]


def test_the_module_docstring_lists_every_attribute_relied_on() -> None:
    doc = uvicorn_protocols.__doc__ or ""
    flat = " ".join(doc.split())
    for table in (RELIED_ON, RELIED_ON_PARAMETERS):
        for cls, names in table.items():
            assert f"`{cls.__qualname__}`" in flat or cls.__qualname__ in flat, f"{cls.__qualname__} is not listed"
            for name in names:
                assert f"`{name}`" in flat, f"{cls.__qualname__}.{name} is not listed in the module docstring"
