"""Diagnostics: each broken spec raises a SpecError at the right line:col, and errors print like mypy/rustc."""

from __future__ import annotations

import textwrap

import pytest

import paperspec
from paperspec import SpecError
from paperspec.compiler.diagnostics import Span, UsageError, closest, did_you_mean, register_source


def load(text: str, path: str = "t.pspec") -> paperspec.Spec:
    return paperspec.loads(textwrap.dedent(text).lstrip("\n"), path=path)


def error_of(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        load(text).check()
    return info.value


INNER = """
        block Inner(d: int) {
          in x: f32[B, d]
          out linear(x, d)
        }"""

# (id, spec, line, column, message substring, hint substring or None)
CASES = [
    (
        "syntax-unexpected-token",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          y = x + * 2
          out y
        }
        """,
        3, 11, "unexpected `*`", "expected",
    ),
    (
        "syntax-dangling-operator",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          y = x +
          out y
        }
        """,
        3, 10, "unexpected end of line", "expected",
    ),
    (
        "syntax-unclosed-brace",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          out x
        """,
        3, 8, "unexpected end of file", "`}`",
    ),
    (
        "syntax-unclosed-paren",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          out linear(x, d
        }
        """,
        4, 1, "unexpected `}`", "`)`",
    ),
    (
        "syntax-bad-character",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          y = x $ 2
          out y
        }
        """,
        3, 9, "unexpected character '$'", None,
    ),
    (
        "syntax-positional-after-keyword",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          out linear(x, bias = false, d)
        }
        """,
        3, 31, "positional argument after a keyword argument", None,
    ),
    (
        "unknown-name-did-you-mean",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          out linaer(x, d)
        }
        """,
        3, 7, "unknown name `linaer`", "did you mean `linear`?",
    ),
    (
        "unknown-local-name",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          hidden = linear(x, d)
          out relu(hiden)
        }
        """,
        4, 12, "unknown name `hiden`", "did you mean `hidden`?",
    ),
    (
        "True-instead-of-true",
        """
        block Inner(causal: bool) {
          in x: f32[B, 4]
          out x
        }
        model M(d: int = 4) {
          in x: f32[B, d]
          out Inner(True)(x)
        }
        """,
        7, 13, "unknown name `True`", "write `true`",
    ),
    (
        "unknown-op-argument",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          out linear(x, d, bais = false)
        }
        """,
        3, 20, "`linear` has no argument `bais`", "did you mean `bias`?",
    ),
    (
        "missing-op-argument",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          out linear(x)
        }
        """,
        3, 7, "missing argument `features` of `linear`", "signature: linear(x: tensor, features: int",
    ),
    (
        "too-many-positional-arguments",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          out linear(x, d, true, 5)
        }
        """,
        3, 26, "`linear` takes 3 arguments, got 4", "signature: linear(",
    ),
    (
        "tensor-where-int-expected",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          out linear(x, x)
        }
        """,
        3, 17, "argument `features` of `linear` must be an integer, got tensor f32[B, 4]", None,
    ),
    (
        "string-where-number-expected",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          out dropout(x, p = "high")
        }
        """,
        3, 18, "argument `p` of `dropout` must be a number, got string 'high'", None,
    ),
    (
        "unknown-dtype",
        """
        model M(d: int = 4) {
          in x: f33[B, d]
          out x
        }
        """,
        2, 9, "unknown dtype `f33`", "did you mean `f32`?",
    ),
    (
        "shape-mismatch-add",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          in y: f32[B, 8]
          out x + y
        }
        """,
        4, 7, "shape mismatch in `+`: [B, 4] vs [B, 8]", "dim -1 is 4 on the left and 8 on the right",
    ),
    (
        "matmul-inner-dims",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          in w: f32[8, d]
          out x @ w
        }
        """,
        4, 11, "shape mismatch in `@`: f32[B, 4] @ f32[8, 4]", "the inner dims must agree: 4 vs 8",
    ),
    (
        "linear-on-integers",
        """
        model M(d: int = 4) {
          in tokens: i64[B, d]
          out linear(tokens, d)
        }
        """,
        3, 14, "`linear` needs a floating-point tensor, got i64[B, 4]", None,
    ),
    (
        "attention-heads-do-not-divide",
        """
        model M(d: int = 6) {
          in x: f32[B, T, d]
          out attention(x, x, x, heads = 4)
        }
        """,
        3, 26, "q size 6 is not divisible by heads = 4", None,
    ),
    (
        "input-constraint-fails",
        """
        block Window(ctx: int) {
          in x: f32[B, T <= ctx]
          out x
        }
        model M(d: int = 4) {
          in x: f32[B, 16]
          out Window(8)(x)
        }
        """,
        7, 17, "input `x` needs T <= 8, got T = 16", None,
    ),
    (
        "block-input-wrong-feature-size",
        INNER
        + """
        model M(d: int = 4) {
          in x: f32[B, 8]
          y = Inner(d)(x)
          out y
        }
        """,
        7, 16, "argument 1 of `Inner` is f32[B, 8], but input `x` is declared f32[B, 4]", "dim 1 is 8, expected 4",
    ),
    (
        "block-input-wrong-dtype",
        INNER
        + """
        model M(d: int = 4) {
          in x: f64[B, 4]
          out Inner(d)(x)
        }
        """,
        7, 16, "argument 1 of `Inner` is f64[B, 4]", "dtype f64 is not f32",
    ),
    (
        "block-too-many-inputs",
        INNER
        + """
        model M(d: int = 4) {
          in x: f32[B, 4]
          out Inner(d)(x, x)
        }
        """,
        7, 7, "`Inner` takes 1 inputs, got 2", None,
    ),
    (
        "block-too-few-inputs",
        """
        block Pair(d: int) {
          in x: f32[B, d]
          in z: f32[B, d]
          out x + z
        }
        model M(d: int = 4) {
          in x: f32[B, 4]
          out Pair(d)(x)
        }
        """,
        8, 7, "`Pair` needs input `z`: f32[B, 4]", None,
    ),
    (
        "unknown-block-parameter",
        INNER
        + """
        model M(d: int = 4) {
          in x: f32[B, 4]
          out Inner(dd = d)(x)
        }
        """,
        7, 13, "`Inner` has no parameter `dd`", "did you mean `d`?",
    ),
    (
        "missing-block-parameter",
        INNER
        + """
        model M(d: int = 4) {
          in x: f32[B, 4]
          out Inner()(x)
        }
        """,
        7, 7, "missing parameter `d` of `Inner`", "parameters: d: int",
    ),
    (
        "block-parameter-wrong-kind",
        INNER
        + """
        model M(d: int = 4) {
          in x: f32[B, 4]
          out Inner(2.5)(x)
        }
        """,
        7, 13, "argument `d` of `Inner` must be an integer, got float 2.5", None,
    ),
    (
        "repeat-changes-carried-shape",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          repeat 2 { x = linear(x, 8) }
          out x
        }
        """,
        3, 14, "the repeat body changes `x` from f32[B, 4] to f32[B, 8]", None,
    ),
    (
        "repeat-count-not-int",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          repeat 2.5 { x = linear(x, d) }
          out x
        }
        """,
        3, 10, "`repeat` needs a non-negative integer known at compile time, got float 2.5", None,
    ),
    (
        "repeat-count-negative",
        """
        model M(layers: int = -1) {
          in x: f32[B, 4]
          repeat layers { x = linear(x, 4) }
          out x
        }
        """,
        3, 10, "got int -1", None,
    ),
    (
        "if-condition-not-bool",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          if d { x = linear(x, d) }
          out x
        }
        """,
        3, 6, "`if` needs a compile-time bool, got int 4", None,
    ),
    (
        "conditional-expression-not-bool",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          out layernorm(x) if d else x
        }
        """,
        3, 23, "condition must be a compile-time bool, got int 4", None,
    ),
    (
        "unpack-count-mismatch",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          a, b, c = split(x, 2)
          out a
        }
        """,
        3, 3, "cannot unpack 2 value(s) into 3 names", None,
    ),
    (
        "output-type-differs",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          out y: f32[B, 8] = linear(x, d)
        }
        """,
        3, 3, "output `y` is f32[B, 4], but is declared f32[B, 8]", None,
    ),
    (
        "output-dtype-differs",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          out y: f64[B, d] = x
        }
        """,
        3, 3, "output `y` is f32[B, 4], but is declared f64[B, 4]", None,
    ),
    (
        "tie-different-shapes",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          h = linear(x, 8)
          out linear(h, d)
          tie linear.weight = h.weight
        }
        """,
        5, 3, "cannot tie `linear.weight` [4, 8] to `h.weight` [8, 4]: shapes differ", None,
    ),
    (
        "tie-to-missing-parameter",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          h = linear(x, d)
          out linear(h, d)
          tie linear.weight = hh.weight
        }
        """,
        5, 23, "`hh.weight` is not a parameter of `M`", "did you mean `h.weight`?",
    ),
    (
        "reshape-wrong-element-count",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          out reshape(x, [B, 3])
        }
        """,
        3, 18, "cannot reshape f32[B, 4] (4 * B elements) to [B, 3] (3 * B elements)", None,
    ),
    (
        "split-not-even",
        """
        model M(d: int = 5) {
          in x: f32[B, d]
          a, b = split(x, 2)
          out a
        }
        """,
        3, 19, "cannot split dim -1 of size 5 into 2 equal parts", None,
    ),
    (
        "block-without-out",
        """
        block Inner(d: int) {
          in x: f32[B, d]
          y = linear(x, d)
        }
        model M(d: int = 4) {
          in x: f32[B, 4]
          out Inner(d)(x)
        }
        """,
        1, 7, "block `Inner` has no `out` statement", None,
    ),
    (
        "duplicate-block",
        INNER
        + INNER
        + """
        model M(d: int = 4) {
          in x: f32[B, 4]
          out Inner(d)(x)
        }
        """,
        5, 7, "block `Inner` is defined twice", None,
    ),
    (
        "duplicate-input",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          in x: f32[B, d]
          out x
        }
        """,
        3, 3, "input `x` is declared twice", None,
    ),
    (
        "param-with-symbolic-dim",
        """
        model M(d: int = 4) {
          in x: f32[T, d]
          param W: [T, d]
          out x + W
        }
        """,
        3, 13, "a parameter's dims must be known non-negative integers, got dim T", None,
    ),
    (
        "unknown-initialiser",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          param W: [d, d] init = normall(0.02)
          out x @ W
        }
        """,
        3, 26, "unknown initialiser `normall`", "did you mean `normal`?",
    ),
    (
        "import-missing-file",
        """
        import "no_such_file_anywhere.pspec"
        model M(d: int = 4) {
          in x: f32[B, d]
          out x
        }
        """,
        1, 1, "cannot import `no_such_file_anywhere.pspec`: no such file", None,
    ),
    (
        "shared-instance-on-other-feature-size",
        """
        block Proj(d: int) {
          in x: f32[B, k]
          out linear(x, d)
        }
        model M(d: int = 4) {
          in x: f32[B, 4]
          in y: f32[B, 8]
          p = Proj(d)
          out p(x) + p(y)
        }
        """,
        9, 14, "instance `p` is applied to inputs its weights do not fit", "same feature sizes at every use",
    ),
    (
        "block-given-tensor-as-parameter",
        INNER
        + """
        model M(d: int = 4) {
          in x: f32[B, 4]
          out Inner(x)
        }
        """,
        7, 13, "`Inner(...)` takes compile-time parameters", "write `Inner(...)(x)`",
    ),
    (
        "constant-division-by-zero",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          out x + d // 0
        }
        """,
        3, 16, "division by zero", None,
    ),
    (
        "model-input-with-leading-ellipsis",
        """
        model M(d: int = 4) {
          in x: f32[.., d]
          out x
        }
        """,
        2, 9, "a model input cannot start with `..`", None,
    ),
    (
        "unknown-tensor-attribute",
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          n = x.size
          out x
        }
        """,
        3, 7, "tensors have no attribute `size`", "tensors have `.shape` and `.rank`",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "column", "message", "hint"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_broken_spec_reports_location_and_message(text, line, column, message, hint):
    error = error_of(text)
    assert error.span is not None
    assert (error.span.path, error.span.line, error.span.column) == ("t.pspec", line, column), error.format()
    assert message in error.message
    if hint is not None:
        assert error.hint is not None and hint in error.hint, error.format()


# ---- SpecError.format() ----


def test_format_shows_location_source_line_caret_and_hint():
    error = error_of(
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          out linaer(x, d)
        }
        """
    )
    assert error.format() == (
        "t.pspec:3:7: error: unknown name `linaer`\n"
        " 3 |   out linaer(x, d)\n"
        "   |       ^^^^^^\n"
        "hint: did you mean `linear`?"
    )


def test_format_caret_underlines_the_whole_span():
    error = error_of(
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          in y: f32[B, 8]
          out x + y
        }
        """
    )
    lines = error.format().splitlines()
    assert lines[0].startswith("t.pspec:4:7: error: shape mismatch in `+`")
    assert lines[1] == " 4 |   out x + y"
    assert lines[2] == "   |       ^^^^^"
    assert lines[3].startswith("hint: ")


def test_format_without_hint_has_no_hint_line():
    error = error_of(
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          in x: f32[B, d]
          out x
        }
        """
    )
    assert error.hint is None
    assert error.format().splitlines() == [
        "t.pspec:3:3: error: input `x` is declared twice",
        " 3 |   in x: f32[B, d]",
        "   |   ^^^^^^^^^^^^^^^",
    ]


def test_format_gutter_widens_for_two_digit_lines():
    padding = "\n".join("# filler" for _ in range(9))
    text = padding + "\nmodel M(d: int = 4) {\n  in x: f32[B, d]\n  out relu(y)\n}\n"
    with pytest.raises(SpecError) as info:
        paperspec.loads(text, path="t.pspec").check()
    assert info.value.format().splitlines()[:3] == [
        "t.pspec:12:12: error: unknown name `y`",
        " 12 |   out relu(y)",
        "    |            ^",
    ]


def test_format_span_over_several_lines_underlines_to_end_of_first_line():
    register_source("multi.pspec", "a = f(x,\n      y)\n")
    error = SpecError("bad call", Span("multi.pspec", 1, 5, 2, 9))
    assert error.format().splitlines() == [
        "multi.pspec:1:5: error: bad call",
        " 1 | a = f(x,",
        "   |     ^^^^",
    ]


def test_error_inside_called_block_notes_the_call_site():
    error = error_of(
        """
        block Inner(d: int, h: int) {
          in x: f32[B, d]
          y = linear(x, h)
          out x + y
        }
        model M(d: int = 4) {
          in x: f32[B, d]
          out Inner(d, 8)(x)
        }
        """
    )
    assert (error.span.line, error.span.column) == (4, 7)
    assert error.notes == ["in `Inner` applied at t.pspec:8:7"]
    lines = error.format().splitlines()
    assert lines[0] == "t.pspec:4:7: error: shape mismatch in `+`: [B, 4] vs [B, 8]"
    assert lines[1] == " 4 |   out x + y"
    assert lines[2] == "   |       ^^^^^"
    assert lines[3].startswith("hint: dim -1 is 4 on the left and 8 on the right")
    assert lines[4] == "note: in `Inner` applied at t.pspec:8:7"


def test_nested_blocks_note_every_call_site_innermost_first():
    error = error_of(
        """
        block Leaf(d: int) {
          in x: f32[B, d]
          out x + linear(x, 2 * d)
        }
        block Middle(d: int) {
          in x: f32[B, d]
          out Leaf(d)(x)
        }
        model M(d: int = 4) {
          in x: f32[B, d]
          out Middle(d)(x)
        }
        """
    )
    assert (error.span.line, error.span.column) == (3, 7)
    assert error.notes == ["in `Leaf` applied at t.pspec:7:7", "in `Middle` applied at t.pspec:11:7"]


def test_str_is_the_first_line_of_format():
    error = error_of(
        """
        model M(d: int = 4) {
          in x: f33[B, d]
          out x
        }
        """
    )
    assert str(error) == "t.pspec:2:9: error: unknown dtype `f33`"
    assert error.format().splitlines()[0] == str(error)


def test_error_without_span_formats_as_one_line():
    error = SpecError("something is wrong", None, "try this")
    assert error.format() == "error: something is wrong\nhint: try this"


def test_unknown_model_is_a_usage_error_with_hint():
    spec = load(
        """
        model GPT(d: int = 4) {
          in x: f32[B, d]
          out x
        }
        """
    )
    with pytest.raises(UsageError) as info:
        spec.graph("GTP")
    assert info.value.span is None
    assert "defines no model `GTP`" in info.value.message
    assert info.value.hint == "did you mean `GPT`?"


def test_bad_override_is_a_usage_error():
    spec = load(
        """
        model GPT(d: int = 4) {
          in x: f32[B, d]
          out x
        }
        """
    )
    with pytest.raises(UsageError) as info:
        spec.graph("GPT", width=3)
    assert info.value.message == "`GPT` has no parameter `width`"
    assert info.value.hint == "parameters: d: int"
    with pytest.raises(UsageError) as info:
        spec.graph("GPT", dd=3)
    assert info.value.hint == "did you mean `d`?"
    with pytest.raises(UsageError) as info:
        spec.graph("GPT", d=2.5)
    assert info.value.message == "argument `d` of `GPT` must be an integer, got float 2.5"


def test_did_you_mean_helpers():
    assert closest("lienar", ["linear", "layernorm"]) == "linear"
    assert closest("zzz", ["linear", "layernorm"]) is None
    assert did_you_mean("heads", ["head", "d"]) == "did you mean `head`?"
    assert did_you_mean("qqq", ["head", "d"]) is None
