"""`calculate`: safe arithmetic. The expression is parsed with `ast` and walked with a whitelist
of node types; nothing is ever `eval`ed. Names, attributes, calls outside a few math functions,
strings, subscripts and comprehensions are rejected. Sizes are bounded: exponents, the digits of
integer results and the length of the expression, so `9**9**9` fails fast instead of hanging.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from tokenrelay.i18n import tr
from tokenrelay.tools.context import ToolError
from tokenrelay.tools.tool import tool

MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 1000
MAX_INT_BITS = 4096
MAX_DEPTH = 50

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "floor": math.floor,
    "ceil": math.ceil,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


class CalculationError(ToolError):
    pass


def too_large() -> str:
    return tr("the result is too large (more than {bits} bits)", bits=MAX_INT_BITS)


def _check_size(value: Any) -> Number:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CalculationError(tr("the expression must compute a number"))
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculationError(too_large())
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculationError(tr("the result is not a finite number"))
    return value


def _power(base: Number, exponent: Number) -> Number:
    if abs(exponent) > MAX_EXPONENT:
        raise CalculationError(tr("exponents are limited to ±{limit}", limit=MAX_EXPONENT))
    big = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    if big and max(int(base).bit_length(), 1) * int(exponent) > MAX_INT_BITS:
        raise CalculationError(too_large())
    result = base**exponent
    if isinstance(result, complex):
        raise CalculationError(tr("a negative number to a fractional power is not a real number"))
    return result


def _eval(node: ast.AST, depth: int = 0) -> Number:
    if depth > MAX_DEPTH:
        raise CalculationError(tr("the expression is nested too deeply"))
    if isinstance(node, ast.Expression):
        return _eval(node.body, depth + 1)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise CalculationError(tr("only numbers are allowed, not {value!r}", value=node.value))
        return node.value
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise CalculationError(
            tr("unknown name {name!r}; only numbers, operators, pi, e, tau", name=node.id)
        )
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check_size(_UNARY[type(node.op)](_eval(node.operand, depth + 1)))
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.BitXor):
            raise CalculationError(tr("^ is not a power here; write 2**3 for 2 to the power of 3"))
        op = _BINARY.get(type(node.op))
        if op is None:
            raise CalculationError(
                tr("the operator {operator} is not allowed", operator=type(node.op).__name__)
            )
        left, right = _eval(node.left, depth + 1), _eval(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            return _check_size(_power(left, right))
        try:
            return _check_size(op(left, right))
        except ZeroDivisionError as e:
            raise CalculationError(tr("division by zero")) from e
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        fn = _FUNCTIONS.get(node.func.id)
        if fn is None:
            allowed = ", ".join(sorted(_FUNCTIONS))
            raise CalculationError(
                tr(
                    "unknown function {name!r}; allowed: {allowed}",
                    name=node.func.id,
                    allowed=allowed,
                )
            )
        args = [_eval(a, depth + 1) for a in node.args]
        try:
            return _check_size(fn(*args))
        except (ValueError, TypeError, OverflowError) as e:
            raise CalculationError(
                tr(
                    "{function} cannot take these values ({error})",
                    function=node.func.id,
                    error=str(e),
                )
            ) from e
    raise CalculationError(
        tr("{part} is not allowed; use numbers and + - * / ** %", part=type(node).__name__)
    )


def evaluate(expression: str) -> Number:
    """Evaluate arithmetic safely; raises CalculationError (a ToolError) with the reason."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculationError(
            tr("the expression is longer than {limit} characters", limit=MAX_EXPRESSION_CHARS)
        )
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as e:
        raise CalculationError(tr("not an arithmetic expression: {error}", error=e.msg)) from e
    try:
        return _eval(tree)
    except OverflowError as e:
        raise CalculationError(tr("the result is too large")) from e


@tool
def calculate(
    expression: Annotated[str, Field(min_length=1, max_length=MAX_EXPRESSION_CHARS)],
) -> dict[str, Any]:
    """Evaluate an arithmetic expression exactly, e.g. "(12.5 * 4) / 3" or "2**10 + sqrt(16)".

    Args:
        expression: numbers with + - * / // % ** and parentheses; functions abs, round, min,
            max, sqrt, floor, ceil, log, log10, exp, sin, cos, tan; constants pi, e, tau
    """
    return {"expression": expression, "result": evaluate(expression)}
