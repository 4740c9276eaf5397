"""Language modelling on a small layered probabilistic context-free grammar."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from paperspec.runtime.data.base import (
    Field,
    NumpyStreamSampler,
    register_generator,
    seed_problem,
    task_rng,
)

VOCAB = 64
SEPARATOR = 0  # starts every document; terminals are tokens 1..63
TERMINALS = VOCAB - 1
NONTERMINALS_PER_LEVEL = 8
MAX_DEPTH = 10  # documents grow up to 3**depth tokens


@dataclass(frozen=True)
class Grammar:
    """Level l's nonterminals rewrite into level l + 1's symbols; the last level is terminals."""

    tables: tuple  # per level: [symbol, rule, position] -> next-level symbol, -1 past the rule's end
    rule_counts: tuple  # per level: [symbol] -> how many rules it has

    @property
    def depth(self) -> int:
        return len(self.tables)


def make_grammar(depth: int, seed: int) -> Grammar:
    """2 or 3 rules per nonterminal, each 2 or 3 symbols long, all fixed by the seed."""
    rng = task_rng(seed, "pcfg")
    sizes = [1] + [NONTERMINALS_PER_LEVEL] * (depth - 1) + [TERMINALS]
    tables, rule_counts = [], []
    for level in range(depth):
        table = np.full((sizes[level], 3, 3), -1, dtype=np.int64)
        counts = rng.integers(2, 4, size=sizes[level])
        for symbol in range(sizes[level]):
            for rule in range(counts[symbol]):
                width = rng.integers(2, 4)
                table[symbol, rule, :width] = rng.integers(0, sizes[level + 1], size=width)
        tables.append(table)
        rule_counts.append(counts)
    return Grammar(tuple(tables), tuple(rule_counts))


def sample_documents(grammar: Grammar, count: int, rng: np.random.Generator) -> list:
    """`count` derivations from the start symbol, expanded level by level, as token arrays."""
    symbols = np.zeros(count, dtype=np.int64)
    owner = np.arange(count)
    for table, counts in zip(grammar.tables, grammar.rule_counts, strict=True):
        rules = (rng.random(len(symbols)) * counts[symbols]).astype(np.int64)  # uniform per symbol
        children = table[symbols, rules]
        keep = children >= 0
        # Row-major masking keeps each document's symbols contiguous and in order.
        owner = np.broadcast_to(owner[:, None], children.shape)[keep]
        symbols = children[keep]
    ends = np.cumsum(np.bincount(owner, minlength=count))[:-1]
    return np.split(symbols + 1, ends)


def pack_documents(grammar: Grammar, batch_size: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """Each row: separator, document, separator, document, ... cut off after `length` tokens."""
    tokens = np.zeros((batch_size, length), dtype=np.int64)
    filled = np.zeros(batch_size, dtype=np.int64)
    while (short := np.flatnonzero(filled < length)).size:
        for row, document in zip(short, sample_documents(grammar, len(short), rng), strict=True):
            piece = np.concatenate(([SEPARATOR], document))[: length - filled[row]]
            tokens[row, filled[row] : filled[row] + len(piece)] = piece
            filled[row] += len(piece)
    return tokens


def _fields(args: dict) -> dict:
    return {"tokens": Field("i64", ("T",))}


def _sampler(args: dict) -> NumpyStreamSampler:
    grammar = make_grammar(args["depth"], args["seed"])

    def draw(batch_size: int, rng: np.random.Generator) -> dict:
        return {"tokens": pack_documents(grammar, batch_size, args["length"], rng)}

    sampler = NumpyStreamSampler(draw, _fields(args))
    sampler.grammar = grammar
    return sampler


def _validate(args: dict) -> str | None:
    if args["length"] < 1:
        return f"pcfg needs length >= 1, got {args['length']}"
    if not 1 <= args["depth"] <= MAX_DEPTH:
        return f"pcfg needs 1 <= depth <= {MAX_DEPTH}, got {args['depth']}"
    return seed_problem(args)


register_generator(
    "pcfg",
    "length: int, depth: int = 6, seed: int = 0",
    _fields,
    _sampler,
    "A layered PCFG in the style of Allen-Zhu & Li 2023 ('Physics of Language Models, Part 1'): "
    "a start symbol, depth - 1 levels of 8 nonterminals, then 63 terminals; each nonterminal has "
    "2 or 3 equally likely rules rewriting it into 2 or 3 symbols of the next level, all fixed "
    "by `seed`, so a document has 2**depth to 3**depth tokens. tokens i64[T], vocabulary 64: "
    "token 0 starts each document, terminals are 1..63. A row packs whole documents, each after "
    "a 0, and is cut off after exactly `length` tokens. The sampler exposes `.grammar`.",
    validate=_validate,
    symbols=lambda args: {"T": args["length"]},
)
