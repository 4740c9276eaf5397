"""Parses .pspec text with the Lark grammar and turns the tree into AST nodes in one pass."""

from __future__ import annotations

import ast as python_ast
import hashlib
from functools import lru_cache
from pathlib import Path

import lark
from lark import Token, Transformer, v_args

from paperspec.compiler import ast
from paperspec.compiler.diagnostics import Span, SpecError, register_source

_BRACKETS_OPEN = {"LPAR", "LSQB"}
_BRACKETS_CLOSE = {"RPAR", "RSQB"}

_CLOSERS = ("`}`", "`)`", "`]`")

_TOKEN_WORDS = {
    "_NL": "end of line",
    "NAME": "name",
    "INT": "integer",
    "FLOAT": "number",
    "STRING": "string",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "COMMA": "`,`",
    "COLON": "`:`",
    "EQUAL": "`=`",
    "DOT": "`.`",
    "$END": "end of file",
}


class _BracketNewlines:
    """Postlexer: newlines inside ( ) and [ ] continue the line, as in Python."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        for token in stream:
            if token.type in _BRACKETS_OPEN:
                depth += 1
            elif token.type in _BRACKETS_CLOSE:
                depth = max(0, depth - 1)
            elif token.type == "_NL" and depth > 0:
                continue
            yield token


@lru_cache(maxsize=1)
def _lark() -> lark.Lark:
    # compiler/ and grammar/ are siblings both in the source tree and in the installed package.
    grammar = (Path(__file__).resolve().parent.parent / "grammar" / "paperspec.lark").read_text()
    return lark.Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        postlex=_BracketNewlines(),
        propagate_positions=True,
        maybe_placeholders=True,
    )


def parse(text: str, path: str = "<string>") -> ast.SpecFile:
    """Parses spec text into an AST; raises SpecError with the location of a syntax error."""
    register_source(path, text)
    try:
        tree = _lark().parse(text if text.endswith("\n") else text + "\n")
    except lark.exceptions.UnexpectedInput as error:
        raise _syntax_error(error, text, path) from None
    builder = _AstBuilder(path)
    try:
        items = builder.transform(tree)
    except lark.exceptions.VisitError as error:
        # Lark wraps what a transformer method raises; a SpecError from the builder is the user's.
        if isinstance(error.orig_exc, SpecError):
            raise error.orig_exc from None
        raise
    return _assemble(items, path, text)


def parse_file(path: str) -> ast.SpecFile:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise FileNotFoundError(f"cannot read spec file {path}: {error.strerror}") from None
    return parse(text, path)


def _syntax_error(error: lark.exceptions.UnexpectedInput, text: str, path: str) -> SpecError:
    line = getattr(error, "line", 1) or 1
    column = getattr(error, "column", 1) or 1
    span = Span(path, line, column, line, column + 1)
    if isinstance(error, lark.exceptions.UnexpectedCharacters):
        char = text[error.pos_in_stream] if error.pos_in_stream < len(text) else "end of file"
        return SpecError(f"unexpected character {char!r}", span)
    if isinstance(error, lark.exceptions.UnexpectedToken):
        token = error.token
        found = _describe_token(token)
        if token.type != "$END":
            span = Span(path, line, column, token.end_line or line, token.end_column or column + 1)
        words = {_TOKEN_WORDS.get(t, _literal_word(t)) for t in error.expected if not t.startswith("__")}
        # Closing brackets first: a missing `}` or `)` is the likeliest cause and must survive the cut below.
        expected = sorted(words, key=lambda word: (word not in _CLOSERS, word))
        hint = f"expected {', '.join(expected[:6])}" if expected else None
        return SpecError(f"unexpected {found}", span, hint)
    return SpecError("unexpected end of file", span)


def _describe_token(token: Token) -> str:
    if token.type == "$END":
        return "end of file"
    if token.type == "_NL":
        return "end of line"
    return f"`{token.value}`"


def _literal_word(terminal: str) -> str:
    pattern = _lark().get_terminal(terminal).pattern if terminal in _terminal_names() else None
    if pattern is not None and pattern.type == "str":
        return f"`{pattern.value}`"
    return terminal.lower()


@lru_cache(maxsize=1)
def _terminal_names() -> frozenset:
    return frozenset(t.name for t in _lark().terminals)


def _span(path: str, meta_or_token) -> Span:
    return Span(path, meta_or_token.line, meta_or_token.column, meta_or_token.end_line, meta_or_token.end_column)


def _assemble(items: list, path: str, text: str) -> ast.SpecFile:
    name = title = None
    cites, imports, blocks, data, trains, expects = [], [], [], [], [], []
    kinds = {ast.DataDecl: data, ast.TrainDef: trains, ast.ExpectDecl: expects}
    for item in items:
        if type(item) in kinds:
            kinds[type(item)].append(item)
        if isinstance(item, tuple) and item[0] == "spec":
            name, title = item[1], item[2]
        elif isinstance(item, tuple) and item[0] == "cite":
            cites.append(item[1])
        elif isinstance(item, ast.Import):
            imports.append(item)
        elif isinstance(item, ast.BlockDef):
            blocks.append(item)
    lines = text.count("\n") + 1
    span = Span(path, 1, 1, lines, 1)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return ast.SpecFile(
        path, name, title, tuple(cites), tuple(imports), tuple(blocks), span, digest, tuple(data), tuple(trains), tuple(expects)
    )


def _string_value(token: Token) -> str:
    return python_ast.literal_eval(token.value)


@v_args(meta=True)
class _AstBuilder(Transformer):
    def __init__(self, path: str):
        super().__init__()
        self.file_path = path

    def span(self, meta) -> Span:
        return _span(self.file_path, meta)

    # ---- top level ----
    def start(self, meta, items):
        return [item for item in items if item is not None]

    def spec_decl(self, meta, children):
        name, title = children
        return ("spec", str(name), _string_value(title) if title is not None else None)

    def cite_decl(self, meta, children):
        return ("cite", _string_value(children[0]))

    def import_decl(self, meta, children):
        path, alias = children
        return ast.Import(_string_value(path), str(alias) if alias is not None else None, self.span(meta))

    def block_def(self, meta, children):
        kind, name, params, body = children
        return ast.BlockDef(str(kind), str(name), tuple(params or ()), body, self.span(meta), _span(self.file_path, name))

    def block_params(self, meta, children):
        return [c for c in children if c is not None]

    def block_param(self, meta, children):
        name, type_name, default = children
        return ast.BlockParam(str(name), str(type_name), default, self.span(meta), _span(self.file_path, type_name))

    def body(self, meta, children):
        return tuple(c for c in children if c is not None)

    # ---- training procedures ----
    def data_decl(self, meta, children):
        name, value = children
        return ast.DataDecl(str(name), value, self.span(meta))

    def expect_decl(self, meta, children):
        condition, within = children
        return ast.ExpectDecl(condition, within, self.span(meta))

    def train_def(self, meta, children):
        name, *after, body = children
        after = [a for a in after if a is not None]
        after_spans = tuple(_span(self.file_path, a) for a in after)
        return ast.TrainDef(str(name), tuple(str(a) for a in after), body, self.span(meta), _span(self.file_path, name), after_spans)

    def train_body(self, meta, children):
        return tuple(c for c in children if c is not None)

    def train_model(self, meta, children):
        _, name, value = children
        return ast.TrainModel(str(name), value, self.span(meta))

    def train_data(self, meta, children):
        return ast.TrainData(children[0], self.span(meta))

    def train_setting(self, meta, children):
        key, value = children
        return ast.TrainSetting(str(key.children[0]), value, self.span(meta))

    def train_checkpoint(self, meta, children):
        return ast.TrainCheckpoint(children[0], self.span(meta))

    def train_freeze(self, meta, children):
        kind, pattern = children
        return ast.TrainFreeze(str(kind.children[0]) == "freeze", pattern, self.span(meta))

    def glob_path(self, meta, children):
        return tuple(str(c) for c in children)

    def train_eval(self, meta, children):
        every, data, batch, metrics = children
        return ast.TrainEval(every, data, metrics, self.span(meta), batch)

    def metrics(self, meta, children):
        return tuple(
            c if isinstance(c, ast.Metric) else ast.Metric(None, c, c.span) for c in children if c is not None
        )

    def named_metric(self, meta, children):
        name, value = children
        return ast.Metric(str(name), value, self.span(meta))

    def train_for(self, meta, children):
        name, iterable, body = children
        return ast.TrainFor(str(name), iterable, body, self.span(meta))

    def train_phase(self, meta, children):
        name, body = children
        return ast.TrainPhase(str(name) if name is not None else None, body, self.span(meta))

    # ---- statements ----
    def in_decl(self, meta, children):
        name, tensor_type = children
        return ast.InputDecl(str(name), tensor_type, self.span(meta))

    def out_typed(self, meta, children):
        name, tensor_type, value = children
        return ast.OutputDecl(str(name), tensor_type, value, self.span(meta))

    def out_named(self, meta, children):
        name, value = children
        return ast.OutputDecl(str(name), None, value, self.span(meta))

    def out_anonymous(self, meta, children):
        return ast.OutputDecl(None, None, children[0], self.span(meta))

    def assign(self, meta, children):
        targets, value = children
        names = tuple(str(t) for t in targets)
        spans = tuple(_span(self.file_path, t) for t in targets)
        return ast.Assign(names, value, self.span(meta), spans)

    def targets(self, meta, children):
        return children

    def param_decl(self, meta, children):
        name, dtype, dims, init = children
        type_span = self.span(meta)
        tensor_type = ast.TensorTypeExpr(
            str(dtype) if dtype is not None else None,
            tuple(dims or ()),
            type_span,
            _span(self.file_path, dtype) if dtype is not None else None,
        )
        return ast.ParamDecl(str(name), tensor_type, init, self.span(meta))

    def tie_stmt(self, meta, children):
        (target, target_span), (source, source_span) = children
        return ast.Tie(target, source, self.span(meta), target_span, source_span)

    def path(self, meta, children):
        return tuple(str(c) for c in children), self.span(meta)

    def repeat_stmt(self, meta, children):
        count, index, body = children
        return ast.Repeat(count, str(index) if index is not None else None, body, self.span(meta))

    def if_stmt(self, meta, children):
        condition, then, otherwise = children
        if isinstance(otherwise, ast.If):
            otherwise = (otherwise,)
        return ast.If(condition, then, otherwise or (), self.span(meta))

    def tensor_type(self, meta, children):
        dtype, dims = children
        return ast.TensorTypeExpr(str(dtype), tuple(dims or ()), self.span(meta), _span(self.file_path, dtype))

    def shape_dims(self, meta, children):
        return [c for c in children if c is not None]

    def ellipsis(self, meta, children):
        return ast.EllipsisExpr(self.span(meta))

    # ---- expressions ----
    def conditional(self, meta, children):
        then, condition, otherwise = children
        return ast.Conditional(condition, then, otherwise, self.span(meta))

    def or_op(self, meta, children):
        return ast.BinaryOp("or", children[0], children[1], self.span(meta))

    def and_op(self, meta, children):
        return ast.BinaryOp("and", children[0], children[1], self.span(meta))

    def not_op(self, meta, children):
        return ast.UnaryOp("not", children[0], self.span(meta))

    def compare(self, meta, children):
        left, op, right = children
        return ast.Compare(str(op), left, right, self.span(meta))

    def binary(self, meta, children):
        left, op, right = children
        return ast.BinaryOp(str(op), left, right, self.span(meta))

    def negate(self, meta, children):
        operand = children[0]
        if isinstance(operand, ast.Literal) and isinstance(operand.value, (int, float)) and not isinstance(operand.value, bool):
            return ast.Literal(-operand.value, self.span(meta))
        return ast.UnaryOp("-", operand, self.span(meta))

    def power_op(self, meta, children):
        return ast.BinaryOp("**", children[0], children[2], self.span(meta))

    def call(self, meta, children):
        func, arguments = children
        args, keywords = [], []
        for argument in arguments or ():
            if isinstance(argument, ast.Keyword):
                keywords.append(argument)
            elif keywords:
                raise SpecError("positional argument after a keyword argument", argument.span)
            else:
                args.append(argument)
        return ast.Call(func, tuple(args), tuple(keywords), self.span(meta))

    def arguments(self, meta, children):
        return [c for c in children if c is not None]

    def keyword(self, meta, children):
        name, value = children
        return ast.Keyword(str(name), value, self.span(meta))

    def index(self, meta, children):
        value, subscripts = children
        return ast.Index(value, tuple(subscripts), self.span(meta))

    def subscripts(self, meta, children):
        return [c for c in children if c is not None]

    def slice(self, meta, children):
        start, stop, step = children
        return ast.Slice(start, stop, step, self.span(meta))

    def attribute(self, meta, children):
        value, name = children
        return ast.Attribute(value, str(name), self.span(meta))

    def name(self, meta, children):
        return ast.Name(str(children[0]), self.span(meta))

    def integer(self, meta, children):
        return ast.Literal(int(children[0]), self.span(meta))

    def floating(self, meta, children):
        return ast.Literal(float(children[0]), self.span(meta))

    def string(self, meta, children):
        return ast.Literal(_string_value(children[0]), self.span(meta))

    def true(self, meta, children):
        return ast.Literal(True, self.span(meta))

    def false(self, meta, children):
        return ast.Literal(False, self.span(meta))

    def none(self, meta, children):
        return ast.Literal(None, self.span(meta))

    def tuple(self, meta, children):
        return ast.TupleExpr(tuple(c for c in children if c is not None), self.span(meta))

    def list(self, meta, children):
        return ast.ListExpr(tuple(c for c in children if c is not None), self.span(meta))
