"""The settings table of docs/deploy.md, generated from the Settings model.

python -m medstream.server.settings_doc docs/deploy.md    # rewrites the table between its markers
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic.fields import FieldInfo

from medstream.server.settings import Settings, env_of, flag_of

BEGIN = "<!-- settings table: generated from the Settings model by `python -m medstream.server.settings_doc` -->"
END = "<!-- end of the settings table -->"
SHORT_FLAGS = {"database_url": "--database"}


def _default(field: FieldInfo) -> str:
    value = field.default
    if value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}" if value >= 10_000 else str(value)
    return f"`{value}`"


def table() -> str:
    """The settings as a Markdown table: flag, environment variable, default and meaning of each."""
    lines = ["| option | environment | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        flags = ", ".join(f"`{flag}`" for flag in (flag_of(name), SHORT_FLAGS.get(name)) if flag)
        meaning = (field.description or "").replace("|", "\\|")
        lines.append(f"| {flags} | `{env_of(name)}` | {_default(field)} | {meaning} |")
    return "\n".join(lines)


def with_table(document: str) -> str:
    """`document` with what lies between the markers replaced by the current table."""
    start, end = document.index(BEGIN) + len(BEGIN), document.index(END)
    return document[:start] + "\n" + table() + "\n" + document[end:]


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/deploy.md")
    path.write_text(with_table(path.read_text()))


if __name__ == "__main__":
    main()
