"""AST of a .pspec file: frozen dataclasses, each carrying the span it was parsed from."""

from __future__ import annotations

from dataclasses import dataclass, field

from paperspec.compiler.diagnostics import Span

# ---- expressions ----


@dataclass(frozen=True)
class Name:
    id: str
    span: Span


@dataclass(frozen=True)
class Literal:
    value: object  # int, float, str, bool or None
    span: Span


@dataclass(frozen=True)
class ListExpr:
    items: tuple
    span: Span


@dataclass(frozen=True)
class TupleExpr:
    items: tuple
    span: Span


@dataclass(frozen=True)
class BinaryOp:
    op: str  # + - * / // % @ ** and or
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class Compare:
    op: str  # == != < <= > >=
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class UnaryOp:
    op: str  # - not
    operand: Expr
    span: Span


@dataclass(frozen=True)
class Conditional:
    condition: Expr
    then: Expr
    otherwise: Expr
    span: Span


@dataclass(frozen=True)
class Keyword:
    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class Call:
    func: Expr
    args: tuple  # of Expr
    keywords: tuple  # of Keyword
    span: Span


@dataclass(frozen=True)
class Slice:
    start: Expr | None
    stop: Expr | None
    step: Expr | None
    span: Span


@dataclass(frozen=True)
class EllipsisExpr:
    span: Span


@dataclass(frozen=True)
class Index:
    value: Expr
    subscripts: tuple  # of Expr | Slice | EllipsisExpr
    span: Span


@dataclass(frozen=True)
class Attribute:
    value: Expr
    name: str
    span: Span


Expr = Name | Literal | ListExpr | TupleExpr | BinaryOp | Compare | UnaryOp | Conditional | Call | Index | Attribute

# ---- types ----


@dataclass(frozen=True)
class TensorTypeExpr:
    dtype: str | None  # None: the dtype is left to the default (f32)
    dims: tuple  # of Expr | EllipsisExpr; a comparison `T <= ctx` declares a dim with a constraint
    span: Span
    dtype_span: Span | None = None


# ---- statements ----


@dataclass(frozen=True)
class InputDecl:
    name: str
    type: TensorTypeExpr
    span: Span


@dataclass(frozen=True)
class OutputDecl:
    name: str | None
    type: TensorTypeExpr | None
    value: Expr | None  # None: output the existing binding `name`
    span: Span


@dataclass(frozen=True)
class Assign:
    targets: tuple  # of str
    value: Expr
    span: Span
    target_spans: tuple = ()


@dataclass(frozen=True)
class ParamDecl:
    name: str
    type: TensorTypeExpr
    init: Expr | None
    span: Span


@dataclass(frozen=True)
class Tie:
    target: tuple  # module path, last item the parameter name
    source: tuple
    span: Span
    target_span: Span
    source_span: Span


@dataclass(frozen=True)
class Repeat:
    count: Expr
    index: str | None
    body: tuple
    span: Span


@dataclass(frozen=True)
class If:
    condition: Expr
    then: tuple
    otherwise: tuple
    span: Span


Stmt = InputDecl | OutputDecl | Assign | ParamDecl | Tie | Repeat | If

# ---- training procedures ----


@dataclass(frozen=True)
class DataDecl:
    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class ExpectDecl:
    condition: Expr
    within: Expr | None
    span: Span


@dataclass(frozen=True)
class TrainModel:
    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class TrainData:
    value: Expr
    span: Span


@dataclass(frozen=True)
class TrainSetting:
    key: str  # loss, optimizer, schedule, steps, batch, seed
    value: Expr
    span: Span


@dataclass(frozen=True)
class TrainCheckpoint:
    every: Expr
    span: Span


@dataclass(frozen=True)
class TrainFreeze:
    freeze: bool  # false: `unfreeze`
    pattern: tuple  # path parts, `*` matching any one part
    span: Span


@dataclass(frozen=True)
class Metric:
    name: str | None
    value: Expr
    span: Span


@dataclass(frozen=True)
class TrainEval:
    every: Expr
    data: Expr | None
    metrics: tuple  # of Metric
    span: Span
    batch: Expr | None = None  # examples per evaluation batch (default: the last phase's batch)


@dataclass(frozen=True)
class TrainPhase:
    name: str | None
    body: tuple
    span: Span


@dataclass(frozen=True)
class TrainFor:
    """`for ckpt in teacher.checkpoints { phase { ... } }`: phases repeated per list item."""

    name: str
    iterable: Expr
    body: tuple
    span: Span


@dataclass(frozen=True)
class TrainDef:
    name: str
    after: tuple  # names of procedures this one uses
    body: tuple
    span: Span
    name_span: Span
    after_spans: tuple = ()  # of Span, one per name in `after`


# ---- top level ----


@dataclass(frozen=True)
class BlockParam:
    name: str
    type_name: str
    default: Expr | None
    span: Span
    type_span: Span


@dataclass(frozen=True)
class BlockDef:
    kind: str  # "block" or "model"
    name: str
    params: tuple  # of BlockParam
    body: tuple  # of Stmt
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Import:
    path: str
    alias: str | None
    span: Span


@dataclass(frozen=True)
class SpecFile:
    path: str
    name: str | None
    title: str | None
    cites: tuple
    imports: tuple  # of Import
    blocks: tuple  # of BlockDef
    span: Span
    source_hash: str = field(default="")
    data: tuple = ()  # of DataDecl
    trains: tuple = ()  # of TrainDef
    expects: tuple = ()  # of ExpectDecl
