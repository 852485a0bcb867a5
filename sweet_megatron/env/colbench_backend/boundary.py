"""A test expression split at the sandbox boundary: the answer's code computes values, this process
decides what they mean.

Rule (what the evaluator documents): in a test expression such as `f(2, [1, 3]) == 7.5` or
`round(f(x), 2)`, every maximal sub-expression that involves a name other than a small set of
pure builtins (the answer's functions, names it defines) runs in the sandbox; everything around
it (comparisons, arithmetic, boolean logic, literals, containers, conditional expressions and
calls of the pure builtins) is evaluated here, on the values that came back as plain data. So
`f(...) == literal` is compared by this process, `len(f(...))` measures a decoded list, and an
object whose `__eq__`, `__len__` or `__round__` lies never gets the chance: it arrives as an
`Opaque` marker (not plain data), and a test whose answer values hold one fails.

    split = split_test("f(2) == 7.5 and g(1) > 0")
    split.sandbox_expr   # "(f(2), g(1),)": one sandbox test, a tuple of the calls' values
    split.evaluate((7.5, 3))   # True, computed here
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass
from typing import Any

PURE_BUILTINS = ("abs", "all", "any", "bool", "dict", "divmod", "enumerate", "float", "frozenset", "int",
                 "isinstance", "len", "list", "max", "min", "range", "reversed", "round", "set", "sorted",
                 "str", "sum", "tuple", "zip", "True", "False", "None")
"""Names this process may evaluate on plain data; any other name is the answer's (the sandbox's)."""
_PARENT_BUILTINS = {name: getattr(builtins, name) for name in PURE_BUILTINS if hasattr(builtins, name)}

# Nodes evaluated here: operators, literals, containers and conditional expressions over their children.
_HERE = (ast.Compare, ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.IfExp, ast.Constant, ast.Tuple, ast.List,
         ast.Set, ast.Dict, ast.Starred, ast.JoinedStr, ast.FormattedValue)
_PLACEHOLDER = "__sweet_value_{}"


class SplitError(ValueError):
    """A test expression that cannot be parsed."""


def _foreign_names(node: ast.AST) -> set[str]:
    """Free names of `node` outside PURE_BUILTINS (names bound inside lambdas and comprehensions
    count too: such a node is evaluated whole, in the sandbox, wherever it sits)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id not in _PARENT_BUILTINS}


@dataclass(frozen=True)
class SplitTest:
    expression: str
    """The test as written."""
    calls: tuple[str, ...]
    """The sub-expressions the sandbox evaluates, in order."""
    template: Any
    """The expression with each call replaced by a placeholder, compiled for eval here."""

    @property
    def sandbox_expr(self) -> str:
        """One sandbox test: the tuple of the calls' values ("()" when the test has none)."""
        return "(" + "".join(c + ", " for c in self.calls) + ")"

    def evaluate(self, values: tuple) -> Any:
        """The test's value, computed here from the calls' decoded values (plain data)."""
        if len(values) != len(self.calls):
            raise ValueError(f"{self.expression!r}: {len(values)} values for {len(self.calls)} calls")
        scope = {_PLACEHOLDER.format(i): v for i, v in enumerate(values)}
        return eval(self.template, {"__builtins__": _PARENT_BUILTINS}, scope)  # noqa: S307 - trusted test text


class _Splitter(ast.NodeTransformer):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def _extract(self, node: ast.expr) -> ast.expr:
        self.calls.append(ast.unparse(node))
        return ast.copy_location(ast.Name(_PLACEHOLDER.format(len(self.calls) - 1), ast.Load()), node)

    def visit(self, node: ast.AST) -> ast.AST:
        if not isinstance(node, ast.expr) or not _foreign_names(node):
            return node  # nothing of the answer's in it: evaluated here as written
        if isinstance(node, _HERE):
            return self.generic_visit(node)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _PARENT_BUILTINS
                and not node.keywords):
            node.args = [self.visit(a) for a in node.args]  # a pure builtin applied here to the values
            return node
        return self._extract(node)


def split_test(expression: str) -> SplitTest:
    """Split one test expression (module docstring). Raises SplitError if it does not parse."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as e:
        raise SplitError(f"test expression {expression!r} is not a Python expression: {e.msg}") from None
    splitter = _Splitter()
    tree.body = splitter.visit(tree.body)
    ast.fix_missing_locations(tree)
    return SplitTest(expression, tuple(splitter.calls), compile(tree, "<test>", "eval"))


def holds_opaque(value: Any, opaque_type: type) -> bool:
    """Whether a decoded value has an `opaque_type` marker anywhere inside it."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, opaque_type):
            return True
        if type(v) in (list, tuple, set, frozenset):
            stack.extend(v)
        elif type(v) is dict:
            stack.extend(v.keys())
            stack.extend(v.values())
    return False
