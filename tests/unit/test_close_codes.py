"""Every websocket close code lives in `errors.CloseCode`: no other module of the package spells one as a number,
and the close codes docs/protocol.md documents are the ones the code names.

The source is read with `ast`, not grep: a number counts as a close code only where it is used as one (an
argument of a close, abort or fail call, a `code` keyword or parameter default, a comparison with a code, or a
value assigned to a name that says close or code), so page sizes and millisecond conversions of 1000 are not
taken for one.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import medstream
from medstream.errors import CloseCode, MedstreamError

PACKAGE = Path(medstream.__file__).parent
PROTOCOL_DOC = Path(__file__).parents[2] / "docs" / "protocol.md"
_CLOSE_CALL = re.compile(r"close|abort|fail|disconnect", re.IGNORECASE)
_CODE_NAME = re.compile(r"close|code", re.IGNORECASE)


def _is_close_code_number(value: object) -> bool:
    return type(value) is int and (1000 <= value <= 1015 or 3000 <= value <= 4999)


def _parameter_of_default(arguments: ast.arguments, default: ast.AST) -> str:
    positional = [*arguments.posonlyargs, *arguments.args]
    with_defaults = positional[len(positional) - len(arguments.defaults) :]
    for parameter, value in zip(with_defaults, arguments.defaults, strict=True):
        if value is default:
            return parameter.arg
    for parameter, kw_value in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True):
        if kw_value is default:
            return parameter.arg
    return ""


def _used_as_close_code(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    child, parent = node, parents.get(node)
    while isinstance(parent, (ast.Dict, ast.Set, ast.Tuple, ast.List)):  # a table of codes: look at its use
        child, parent = parent, parents.get(parent)
    if isinstance(parent, ast.keyword):
        return parent.arg is not None and _CODE_NAME.search(parent.arg) is not None
    if isinstance(parent, ast.Call) and child is not parent.func:
        callee = ast.unparse(parent.func)
        code_default = callee.endswith(".get") and ast.unparse(parent.args[0]) in ("'code'", '"code"')
        return code_default or _CLOSE_CALL.search(callee) is not None
    if isinstance(parent, ast.arguments):
        return _CODE_NAME.search(_parameter_of_default(parent, child)) is not None
    if isinstance(parent, ast.Compare):
        return "code" in ast.unparse(parent).lower()
    if isinstance(parent, (ast.Assign, ast.AnnAssign)):
        targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
        return any(_CODE_NAME.search(ast.unparse(target)) for target in targets)
    return False


def close_code_literals(source: str) -> list[tuple[int, int]]:
    """(line, number) of each close code spelled as a number in `source`."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and _is_close_code_number(node.value) and _used_as_close_code(node, parents)
    ]
    return sorted(found)


def test_no_module_but_errors_spells_a_close_code() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "errors.py"
        for line, number in close_code_literals(path.read_text())
    ]
    assert found == [], "close codes spelled as numbers; name them with medstream.errors.CloseCode:\n" + "\n".join(
        found
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("connection.close_soon(1011, 'internal error')", [(1, 1011)]),
        ("socket.abort(4408, 'heartbeat timeout')", [(1, 4408)]),
        ("async def close(self, code: int = 1000) -> None: ...", [(1, 1000)]),
        ("raise WebSocketDisconnect(message.get('code', 1000))", [(1, 1000)]),
        ("FATAL = {4003: 'forbidden', 1009: 'too big'}\nx = 400 if code == 4400 else 403", [(2, 4400)]),
        ("_FATAL_CLOSE_CODES = {4003: 'forbidden', 1009: 'too big'}", [(1, 1009), (1, 4003)]),
        ("class E:\n    close_code = 4429", [(2, 4429)]),
        ("await websocket.close(code=4001)", [(1, 4001)]),
        ("_PAGE = 1000\nlimit = Field(1000, le=10_000)\nms = seconds * 1000\nn = Field(max_length=4096)", []),
        ("def list_page(self, limit: int = 1000) -> None: ...", []),
    ],
)
def test_the_scan_finds_close_codes_where_they_are_used_as_such(source: str, expected: list[tuple[int, int]]) -> None:
    assert close_code_literals(source) == expected


def test_every_error_closes_with_a_named_code() -> None:
    errors = [MedstreamError, *_subclasses(MedstreamError)]
    assert all(isinstance(cls.close_code, CloseCode) for cls in errors), [
        cls.__name__ for cls in errors if not isinstance(cls.close_code, CloseCode)
    ]


def test_the_documented_close_codes_are_named_in_errors() -> None:
    table = PROTOCOL_DOC.read_text().split("### Close codes", 1)[1].split("\n\n", 2)[1]
    documented = {int(code) for code in re.findall(r"^\| (\d{4}) \|", table, re.MULTILINE)}
    assert documented, "docs/protocol.md has a close code table"
    assert documented <= set(CloseCode), sorted(documented - set(CloseCode))
    sent_by_the_server = {
        CloseCode.NORMAL_CLOSURE,
        CloseCode.GOING_AWAY,
        CloseCode.INTERNAL_ERROR,
        CloseCode.TRY_AGAIN_LATER,
        CloseCode.UNAUTHORIZED,
        CloseCode.MALFORMED_MESSAGE,
        CloseCode.HEARTBEAT_TIMEOUT,
        CloseCode.TOO_SLOW,
    }
    assert sent_by_the_server <= documented, sorted(sent_by_the_server - documented)


def _subclasses(cls: type[MedstreamError]) -> list[type[MedstreamError]]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]
