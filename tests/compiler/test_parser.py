"""Parser: every statement and expression form becomes the right AST node, with spans, precedence and layout rules."""

from __future__ import annotations

import textwrap

import pytest

from paperspec import SpecError
from paperspec.compiler import ast
from paperspec.compiler.diagnostics import Span
from paperspec.compiler.parser import parse


def parse_text(text: str) -> ast.SpecFile:
    return parse(textwrap.dedent(text).lstrip("\n"), "t.pspec")


def body_of(text: str) -> tuple:
    """The statements of the only block in `text`."""
    spec = parse_text(text)
    assert len(spec.blocks) == 1
    return spec.blocks[0].body


def expression(source: str):
    """The AST of one expression, parsed as the right side of an assignment."""
    (statement,) = body_of(f"model M() {{\n  e = {source}\n}}\n")
    assert isinstance(statement, ast.Assign)
    return statement.value


def sexpr(node):
    """A span-free picture of an expression, to compare trees compactly."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Literal):
        return node.value
    if isinstance(node, (ast.BinaryOp, ast.Compare)):
        return (node.op, sexpr(node.left), sexpr(node.right))
    if isinstance(node, ast.UnaryOp):
        return (node.op, sexpr(node.operand))
    if isinstance(node, ast.Conditional):
        return ("if", sexpr(node.condition), sexpr(node.then), sexpr(node.otherwise))
    if isinstance(node, ast.Call):
        keywords = tuple((k.name, sexpr(k.value)) for k in node.keywords)
        return ("call", sexpr(node.func), tuple(sexpr(a) for a in node.args), keywords)
    if isinstance(node, ast.Index):
        return ("[]", sexpr(node.value), tuple(sexpr(s) for s in node.subscripts))
    if isinstance(node, ast.Slice):
        return ("slice", sexpr(node.start), sexpr(node.stop), sexpr(node.step))
    if isinstance(node, ast.EllipsisExpr):
        return ".."
    if isinstance(node, ast.Attribute):
        return (".", sexpr(node.value), node.name)
    if isinstance(node, ast.ListExpr):
        return ("list", *(sexpr(i) for i in node.items))
    if isinstance(node, ast.TupleExpr):
        return ("tuple", *(sexpr(i) for i in node.items))
    if node is None:
        return None
    raise AssertionError(f"unexpected node {node!r}")


def at(node) -> tuple:
    return (node.span.line, node.span.column, node.span.end_line, node.span.end_column)


# ---- top level ----


def test_top_level_items():
    spec = parse_text(
        """
        spec gpt "Decoder-only Transformer"
        cite "Vaswani et al. 2017"
        cite "Radford et al. 2019"
        import "layers.pspec"
        import "other.pspec" as other

        block Layer(d: int, heads: int = 4, act: fn = gelu,) {
          in x: f32[B, d]
          out x
        }
        model GPT() { in t: i64[B, T]; out t }
        """
    )
    assert spec.path == "t.pspec"
    assert (spec.name, spec.title) == ("gpt", "Decoder-only Transformer")
    assert spec.cites == ("Vaswani et al. 2017", "Radford et al. 2019")
    assert [(i.path, i.alias) for i in spec.imports] == [("layers.pspec", None), ("other.pspec", "other")]
    assert at(spec.imports[1]) == (5, 1, 5, 30)
    layer, gpt = spec.blocks
    assert (layer.kind, layer.name, gpt.kind, gpt.name) == ("block", "Layer", "model", "GPT")
    assert at(layer)[:2] == (7, 1)
    assert (layer.name_span.line, layer.name_span.column, layer.name_span.end_column) == (7, 7, 12)
    assert [(p.name, p.type_name) for p in layer.params] == [("d", "int"), ("heads", "int"), ("act", "fn")]
    assert layer.params[0].default is None
    assert sexpr(layer.params[1].default) == 4
    assert sexpr(layer.params[2].default) == "gelu"
    assert (layer.params[1].type_span.column, layer.params[1].type_span.end_column) == (28, 31)
    assert gpt.params == ()
    assert len(spec.source_hash) == 64


def test_source_hash_depends_on_text():
    a = parse("model M() { out x }\n", "a.pspec")
    b = parse("model M() { out y }\n", "a.pspec")
    assert a.source_hash != b.source_hash
    assert a.source_hash == parse("model M() { out x }\n", "b.pspec").source_hash


def test_empty_file_and_comments_only():
    assert parse("", "t.pspec").blocks == ()
    assert parse("# only a comment\n\n   \n# another\n", "t.pspec").blocks == ()


# ---- statements ----


def test_every_statement_form():
    body = body_of(
        """
        block B(d: int) {
          in x: f32[B, T <= 8, ..]
          in mask: bool[B, T]
          y = linear(x, d)
          q, k, v = split(y, 3)
          param W: bf16[d, 2 * d] init = normal(0.02)
          param b: [d]
          tie a.b.weight = c.weight
          repeat 3 { y = f(y) }
          repeat n as i { y = g(y, i) }
          if a { y = 1 } else if b { y = 2 } else { y = 3 }
          if c { y = 4 }
          out y
          out named = y
          out typed: f32[B, d] = y
          out bare: f32[B, d]
        }
        """
    )
    kinds = [type(s).__name__ for s in body]
    assert kinds == [
        "InputDecl", "InputDecl", "Assign", "Assign", "ParamDecl", "ParamDecl", "Tie", "Repeat", "Repeat",
        "If", "If", "OutputDecl", "OutputDecl", "OutputDecl", "OutputDecl",
    ]
    x, mask, assign, unpack, weight, bias, tie, repeat, indexed, chain, single, out, named, typed, bare = body

    assert x.name == "x" and x.type.dtype == "f32"
    assert [sexpr(d) for d in x.type.dims] == ["B", ("<=", "T", 8), ".."]
    assert (x.type.dtype_span.column, x.type.dtype_span.end_column) == (9, 12)
    assert mask.type.dtype == "bool"
    assert [sexpr(d) for d in mask.type.dims] == ["B", "T"]

    assert assign.targets == ("y",)
    assert [(s.line, s.column) for s in assign.target_spans] == [(4, 3)]
    assert unpack.targets == ("q", "k", "v")
    assert [s.column for s in unpack.target_spans] == [3, 6, 9]

    assert (weight.name, weight.type.dtype) == ("W", "bf16")
    assert [sexpr(d) for d in weight.type.dims] == ["d", ("*", 2, "d")]
    assert sexpr(weight.init) == ("call", "normal", (0.02,), ())
    assert (bias.name, bias.type.dtype, bias.init) == ("b", None, None)

    assert (tie.target, tie.source) == (("a", "b", "weight"), ("c", "weight"))
    assert (tie.target_span.column, tie.target_span.end_column) == (7, 17)
    assert (tie.source_span.column, tie.source_span.end_column) == (20, 28)

    assert sexpr(repeat.count) == 3 and repeat.index is None
    assert [sexpr(s.value) for s in repeat.body] == [("call", "f", ("y",), ())]
    assert sexpr(indexed.count) == "n" and indexed.index == "i"

    assert sexpr(chain.condition) == "a"
    assert [sexpr(s.value) for s in chain.then] == [1]
    (inner,) = chain.otherwise
    assert isinstance(inner, ast.If) and sexpr(inner.condition) == "b"
    assert [sexpr(s.value) for s in inner.otherwise] == [3]
    assert single.otherwise == ()

    assert (out.name, out.type, sexpr(out.value)) == (None, None, "y")
    assert (named.name, named.type, sexpr(named.value)) == ("named", None, "y")
    assert typed.name == "typed" and [sexpr(d) for d in typed.type.dims] == ["B", "d"]
    assert (bare.name, bare.value) == ("bare", None)


def test_statement_spans():
    body = body_of(
        """
        model M(d: int = 4) {
          in x: f32[B, d]
          h = linear(x,
                     d)
          repeat 2 {
            h = relu(h)
          }
          out h
        }
        """
    )
    x, h, repeat, out = body
    assert at(x) == (2, 3, 2, 18)
    assert at(x.type) == (2, 9, 2, 18)
    assert at(h) == (3, 3, 4, 16)
    assert at(h.value) == (3, 7, 4, 16)
    assert at(h.value.args[1]) == (4, 14, 4, 15)
    assert at(repeat) == (5, 3, 7, 4)
    assert at(repeat.body[0]) == (6, 5, 6, 16)
    assert at(out) == (8, 3, 8, 8)


# ---- layout: comments, blank lines, continuation ----


def test_comments_and_blank_lines_are_ignored():
    body = body_of(
        """
        # a comment before the block

        model M(d: int = 4) {   # after the brace

          # a comment line
          in x: f32[B, d]   # after a statement


          out x  # the end
          # trailing comment
        }
        # after the block
        """
    )
    assert [type(s).__name__ for s in body] == ["InputDecl", "OutputDecl"]


def test_newlines_inside_brackets_continue_the_line():
    body = body_of(
        """
        model M(d: int = 4) {
          in x: f32[
            B,
            d,
          ]
          y = mlp(
            x,          # comments inside brackets too
            hidden = [
              4 * d,
            ][0],
          )
          out y
        }
        """
    )
    x, y, _ = body
    assert [sexpr(d) for d in x.type.dims] == ["B", "d"]
    assert sexpr(y.value) == ("call", "mlp", ("x",), (("hidden", ("[]", ("list", ("*", 4, "d")), (0,))),))


def test_backslash_continues_a_line():
    (assign, _) = body_of(
        """
        model M() {
          e = a + \\
              b
          out e
        }
        """
    )
    assert sexpr(assign.value) == ("+", "a", "b")


def test_newline_outside_brackets_ends_the_statement():
    with pytest.raises(SpecError) as info:
        parse_text(
            """
            model M() {
              e = a +
                  b
            }
            """
        )
    assert (info.value.span.line, info.value.span.column) == (2, 10)
    assert info.value.message == "unexpected end of line"


def test_single_line_bodies_and_semicolons():
    body = body_of("model M(d: int = 4) { in x: f32[B, d]; repeat 3 { x = f(x) }; out x }")
    assert [type(s).__name__ for s in body] == ["InputDecl", "Repeat", "OutputDecl"]
    assert sexpr(body[1].body[0].value) == ("call", "f", ("x",), ())
    body = body_of("model M() {\n  repeat 2 { a = 1; b = 2 }\n  if c { x = 1 } else { x = 2 }\n}")
    assert [s.targets for s in body[0].body] == [("a",), ("b",)]
    assert [s.targets for s in body[1].then + body[1].otherwise] == [("x",), ("x",)]


def test_blocks_on_one_line_each():
    spec = parse_text("block A() { out x }\nblock B() { out y }\nmodel M() { out z }\n")
    assert [b.name for b in spec.blocks] == ["A", "B", "M"]


# ---- expressions ----


@pytest.mark.parametrize(
    ("source", "tree"),
    [
        # atoms
        ("x", "x"),
        ("42", 42),
        ("2.5", 2.5),
        ("1e-3", 0.001),
        ("3.0e2", 300.0),
        ('"text"', "text"),
        ('"a \\"quoted\\" word"', 'a "quoted" word'),
        ("true", True),
        ("false", False),
        ("none", None),
        ("[]", ("list",)),
        ("[1, 2, 3,]", ("list", 1, 2, 3)),
        ("(a)", "a"),
        ("(a,)", ("tuple", "a")),
        ("(a, b)", ("tuple", "a", "b")),
        # negative literals fold; negating anything else is an operator
        ("-1", -1),
        ("-2.5", -2.5),
        ("-x", ("-", "x")),
        ("+x", "x"),
        # arithmetic precedence and associativity
        ("a + b * c", ("+", "a", ("*", "b", "c"))),
        ("a * b + c", ("+", ("*", "a", "b"), "c")),
        ("a - b - c", ("-", ("-", "a", "b"), "c")),
        ("a / b // c % d", ("%", ("//", ("/", "a", "b"), "c"), "d")),
        ("a @ b + c", ("+", ("@", "a", "b"), "c")),
        ("a + b @ c", ("+", "a", ("@", "b", "c"))),
        ("a * b @ c", ("@", ("*", "a", "b"), "c")),
        ("-x ** 2", ("-", ("**", "x", 2))),
        ("-2 ** 2", ("-", ("**", 2, 2))),
        ("a ** b ** c", ("**", "a", ("**", "b", "c"))),
        ("a ** -b", ("**", "a", ("-", "b"))),
        ("2 * -x", ("*", 2, ("-", "x"))),
        ("(a + b) * c", ("*", ("+", "a", "b"), "c")),
        # comparisons bind looser than arithmetic, tighter than not/and/or
        ("a + 1 < b * 2", ("<", ("+", "a", 1), ("*", "b", 2))),
        ("a == b", ("==", "a", "b")),
        ("a != b", ("!=", "a", "b")),
        ("a <= b", ("<=", "a", "b")),
        ("a >= b", (">=", "a", "b")),
        ("a > b", (">", "a", "b")),
        ("not a == b", ("not", ("==", "a", "b"))),
        ("not not a", ("not", ("not", "a"))),
        ("a and b or c", ("or", ("and", "a", "b"), "c")),
        ("a or b and c", ("or", "a", ("and", "b", "c"))),
        ("a < b and c", ("and", ("<", "a", "b"), "c")),
        # conditional expressions are the loosest and nest to the right
        ("x if c else y", ("if", "c", "x", "y")),
        ("x + 1 if a < b else y * 2", ("if", ("<", "a", "b"), ("+", "x", 1), ("*", "y", 2))),
        ("x if c else y if d else z", ("if", "c", "x", ("if", "d", "y", "z"))),
        # postfix: calls, keywords, attributes, indexing
        ("f()", ("call", "f", (), ())),
        ("f(x, 2, k = 3, flag = true,)", ("call", "f", ("x", 2), (("k", 3), ("flag", True)))),
        ("Block(d)(x)", ("call", ("call", "Block", ("d",), ()), ("x",), ())),
        ("x.shape[-1]", ("[]", (".", "x", "shape"), (-1,))),
        ("lib.Proj(d)", ("call", (".", "lib", "Proj"), ("d",), ())),
        ("-x.shape[0]", ("-", ("[]", (".", "x", "shape"), (0,)))),
        ("x[0]", ("[]", "x", (0,))),
        ("x[:, -1, ..]", ("[]", "x", (("slice", None, None, None), -1, ".."))),
        ("x[1:3:2]", ("[]", "x", (("slice", 1, 3, 2),))),
        ("x[1:]", ("[]", "x", (("slice", 1, None, None),))),
        ("x[:-1]", ("[]", "x", (("slice", None, -1, None),))),
        ("x[::2]", ("[]", "x", (("slice", None, None, 2),))),
        ("x[.., none]", ("[]", "x", ("..", None))),
        ("x[i + 1, T - 1:]", ("[]", "x", (("+", "i", 1), ("slice", ("-", "T", 1), None, None)))),
        ("x[0,]", ("[]", "x", (0,))),
    ],
)
def test_expression_forms(source, tree):
    assert sexpr(expression(source)) == tree


def test_expression_node_types():
    assert isinstance(expression("a + b"), ast.BinaryOp)
    assert isinstance(expression("a < b"), ast.Compare)
    assert isinstance(expression("not a"), ast.UnaryOp)
    assert isinstance(expression("x if c else y"), ast.Conditional)
    call = expression("f(a, k = 1)")
    assert isinstance(call, ast.Call) and isinstance(call.keywords[0], ast.Keyword)
    index = expression("x[1:2, ..]")
    assert isinstance(index, ast.Index)
    assert isinstance(index.subscripts[0], ast.Slice) and isinstance(index.subscripts[1], ast.EllipsisExpr)
    assert isinstance(expression("x.shape"), ast.Attribute)
    assert isinstance(expression("[1]"), ast.ListExpr)
    assert isinstance(expression("(1, 2)"), ast.TupleExpr)
    assert isinstance(expression("1"), ast.Literal) and isinstance(expression("1").value, int)
    assert isinstance(expression("1.0").value, float)


def test_expression_spans():
    # "  e = " puts the expression at column 7 of line 2.
    value = expression("a + f(b, k = c)[1:2]")
    assert at(value) == (2, 7, 2, 27)
    assert at(value.left) == (2, 7, 2, 8)
    index = value.right
    assert at(index) == (2, 11, 2, 27)
    call = index.value
    assert at(call) == (2, 11, 2, 22)
    assert at(call.args[0]) == (2, 13, 2, 14)
    assert at(call.keywords[0]) == (2, 16, 2, 21)
    assert at(call.keywords[0].value) == (2, 20, 2, 21)
    assert at(index.subscripts[0]) == (2, 23, 2, 26)
    negative = expression("-12")
    assert at(negative) == (2, 7, 2, 10)


def test_spans_are_span_objects_with_path():
    value = expression("x")
    assert value.span == Span("t.pspec", 2, 7, 2, 8)
    assert str(value.span) == "t.pspec:2:7"


def test_ast_nodes_are_frozen():
    value = expression("x")
    with pytest.raises(AttributeError):
        value.id = "y"


# ---- errors ----


def test_positional_after_keyword_is_a_spec_error():
    with pytest.raises(SpecError) as info:
        expression("f(a = 1, b)")
    assert info.value.message == "positional argument after a keyword argument"
    assert (info.value.span.line, info.value.span.column) == (2, 16)


@pytest.mark.parametrize(
    ("source", "line", "column", "message"),
    [
        ("model M() {\n  e = a < b < c\n}\n", 2, 13, "unexpected `<`"),
        ("model M() {\n  e = f(a b)\n}\n", 2, 11, "unexpected `b`"),
        ("model M() {\n  e = [1, 2\n}\n", 3, 1, "unexpected `}`"),
        ("model M() {\n  e = 1 @@ 2\n}\n", 2, 10, "unexpected `@`"),
        ("model M() {\n  e = x[1:2:3:4]\n}\n", 2, 14, "unexpected `:`"),
        ("model M() {\n  in x f32[B]\n}\n", 2, 8, "unexpected `f32`"),
        ("model M(d) {\n  out x\n}\n", 1, 10, "unexpected `)`"),
        ("module M() {\n  out x\n}\n", 1, 1, "unexpected `module`"),
        ("model M() {\n  e = `tick`\n}\n", 2, 7, "unexpected character '`'"),
        ("model M() {\n  e = x ! y\n}\n", 2, 9, "unexpected character '!'"),
    ],
)
def test_syntax_errors(source, line, column, message):
    with pytest.raises(SpecError) as info:
        parse(source, "t.pspec")
    error = info.value
    assert (error.span.path, error.span.line, error.span.column) == ("t.pspec", line, column), error.format()
    assert error.message == message


def test_syntax_error_hint_lists_expected_tokens():
    with pytest.raises(SpecError) as info:
        parse("model M() {\n  out f(x\n", "t.pspec")
    assert info.value.hint.startswith("expected `)`")
