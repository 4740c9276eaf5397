"""Symbolic dims: canonical polynomials, substitution, floor division and rendering, checked against Python ints."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paperspec.compiler.dims import (
    FloorDiv,
    Sym,
    add,
    dims_equal,
    floordiv,
    is_dim,
    mul,
    render,
    substitute,
)

B, T, D = Sym.symbol("B"), Sym.symbol("T"), Sym.symbol("D")


# ---- canonical form ----


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (lambda: 2 * T + 1, lambda: 1 + T + T),
        (lambda: T * B, lambda: B * T),
        (lambda: (T + 1) * (T - 1), lambda: T * T - 1),
        (lambda: B * (T + D), lambda: D * B + T * B),
        (lambda: 3 * T - T, lambda: T + T),
        (lambda: T - (1 - T), lambda: 2 * T - 1),
        (lambda: -(T * -1), lambda: T),
        (lambda: add(T, B), lambda: add(B, T)),
        (lambda: mul(T, 4), lambda: T * 2 * 2),
    ],
)
def test_equal_polynomials_are_equal(left, right):
    a, b = left(), right()
    assert a == b
    assert dims_equal(a, b)
    assert hash(a) == hash(b)


def test_different_polynomials_differ():
    assert 2 * T != T + 1
    assert T * T != 2 * T
    assert B * T != B + T
    assert T != B


def test_constant_polynomials_are_plain_ints():
    assert T - T == 0 and type(T - T) is int
    assert (T + 3) - T == 3 and type((T + 3) - T) is int
    assert T * 0 == 0
    assert Sym.from_terms({(): 5}) == 5
    assert Sym.from_terms({("T",): 0}) == 0


def test_int_arithmetic_stays_int():
    assert add(2, 3) == 5 and mul(2, 3) == 6 and floordiv(7, 2) == 3


def test_is_dim():
    assert is_dim(3) and is_dim(T) and is_dim(2 * T + 1)
    assert not is_dim(True) and not is_dim(2.0) and not is_dim("T") and not is_dim(None)


def test_atoms():
    assert (2 * B * T + D).atoms() == {"B", "T", "D"}
    assert ((T + 1) // 2).atoms() == {"T"}
    assert (B * ((T + D) // 3)).atoms() == {"B", "T", "D"}


# ---- substitution ----


def test_substitute_with_ints():
    assert substitute(2 * T + 1, {"T": 5}) == 11
    assert substitute(B * T * D, {"B": 2, "T": 3, "D": 4}) == 24
    assert substitute(7, {"T": 5}) == 7


def test_substitute_partially_keeps_other_symbols():
    assert substitute(B * T + T, {"T": 3}) == 3 * B + 3
    assert substitute(B * T, {}) == B * T


def test_substitute_with_polynomials():
    S = Sym.symbol("S")
    assert substitute(T * T, {"T": S + 1}) == S * S + 2 * S + 1
    assert substitute(2 * T, {"T": S - S + 3}) == 6
    # simultaneous, not sequential
    assert substitute(B + 2 * T, {"B": T, "T": B}) == T + 2 * B


def test_substitute_inside_floor_division():
    half = (T + 1) // 2
    assert substitute(half, {"T": 5}) == 3
    assert substitute(half, {"T": 6}) == 3
    assert substitute(half, {"T": 2 * B + 1}) == B + 1
    assert substitute(B * half, {"B": 2, "T": 7}) == 8


# ---- floor division ----


def test_floordiv_exact():
    assert (2 * T + 4) // 2 == T + 2
    assert (6 * B * T) // 3 == 2 * B * T
    assert (-4 * T) // 2 == -2 * T
    assert floordiv(T, 1) == T
    assert not any(isinstance(a, FloorDiv) for mono, _ in ((2 * T + 4) // 2).terms for a in mono)


def test_floordiv_opaque():
    half = (T + 1) // 2
    assert isinstance(half, Sym)
    ((mono, coeff),) = half.terms
    assert coeff == 1 and mono == (FloorDiv(T + 1, 2),)
    # opaque divisions are canonical too: the same numerator and divisor give the same atom
    assert half == (1 + T) // 2
    assert half != (T + 1) // 3
    assert 2 * half != T + 1  # floor division does not cancel


def test_floordiv_errors():
    with pytest.raises(ZeroDivisionError):
        floordiv(T, 0)
    with pytest.raises(TypeError):
        floordiv(T, B)


# ---- rendering ----


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (lambda: 7, "7"),
        (lambda: T, "T"),
        (lambda: -T, "-T"),
        (lambda: 2 * T + 1, "1 + 2 * T"),
        (lambda: T - 1, "-1 + T"),
        (lambda: 1 - T, "1 - T"),
        (lambda: B * T, "B * T"),
        (lambda: T * T, "T * T"),
        (lambda: 2 * B * T - 3 * T + B + 7, "7 + B - 3 * T + 2 * B * T"),
        (lambda: (T + 1) // 2, "(1 + T) // 2"),
        (lambda: 3 - (T + 1) // 2, "3 - (1 + T) // 2"),
        (lambda: B * ((T + 1) // 2), "B * ((1 + T) // 2)"),
        (lambda: 2 * ((T + 1) // 2), "2 * ((1 + T) // 2)"),
        (lambda: -((T + 1) // 2), "-((1 + T) // 2)"),
    ],
)
def test_render(value, text):
    dim = value()
    assert render(dim, str) == text
    if isinstance(dim, Sym):
        assert str(dim) == text


def test_render_maps_symbol_names():
    assert render(2 * B * T + 1, lambda name: f"x.shape[{'BT'.index(name)}]") == "1 + 2 * x.shape[0] * x.shape[1]"


def test_floordiv_str():
    assert str(FloorDiv(T + 1, 2)) == "(1 + T) // 2"


# ---- property: symbolic evaluation agrees with Python ints ----

NAMES = ("A", "B", "T")


def expressions():
    """Random expression trees over NAMES: ("sym", name) | ("int", k) | (op, left, right) | ("//", e, k)."""
    leaves = st.one_of(st.sampled_from(NAMES).map(lambda n: ("sym", n)), st.integers(-6, 6).map(lambda k: ("int", k)))

    def extend(children):
        binary = st.tuples(st.sampled_from(["+", "-", "*"]), children, children)
        division = st.tuples(st.just("//"), children, st.integers(-5, 5).filter(lambda k: k != 0))
        negation = st.tuples(st.just("neg"), children)
        return st.one_of(binary, division, negation)

    return st.recursive(leaves, extend, max_leaves=8)


def evaluate(tree, leaf):
    kind = tree[0]
    if kind == "sym":
        return leaf(tree[1])
    if kind == "int":
        return tree[1]
    if kind == "neg":
        return -evaluate(tree[1], leaf)
    if kind == "//":
        return evaluate(tree[1], leaf) // tree[2]
    left, right = evaluate(tree[1], leaf), evaluate(tree[2], leaf)
    return {"+": left + right, "-": left - right, "*": left * right}[kind]


@settings(max_examples=300, deadline=None)
@given(tree=expressions(), values=st.fixed_dictionaries({n: st.integers(-20, 20) for n in NAMES}))
def test_substitution_agrees_with_integer_evaluation(tree, values):
    symbolic = evaluate(tree, Sym.symbol)
    expected = evaluate(tree, values.__getitem__)
    assert substitute(symbolic, values) == expected


@settings(max_examples=300, deadline=None)
@given(tree=expressions(), values=st.fixed_dictionaries({n: st.integers(-20, 20) for n in NAMES}))
def test_rendered_dim_evaluates_like_python(tree, values):
    # The PyTorch backend writes dims with `render`; the text must mean the same as the dim.
    symbolic = evaluate(tree, Sym.symbol)
    text = render(symbolic, str)
    assert eval(text, {"__builtins__": {}}, dict(values)) == evaluate(tree, values.__getitem__)  # noqa: S307


@settings(max_examples=200, deadline=None)
@given(left=expressions(), right=expressions())
def test_equal_dims_agree_everywhere(left, right):
    a, b = evaluate(left, Sym.symbol), evaluate(right, Sym.symbol)
    if a == b:
        for values in ({"A": 3, "B": -2, "T": 7}, {"A": 0, "B": 5, "T": -4}):
            assert substitute(a, values) == substitute(b, values)
