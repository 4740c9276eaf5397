"""Sequence tasks with per-position labels: running parity, modular counting, DFAs and Dyck words."""

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


def _length_symbols(args: dict) -> dict:
    return {"T": args["length"]}


def _labelled_fields(args: dict) -> dict:
    # 'T' rather than the length itself, so a longer test split checks against the same model.
    return {"x": Field("i64", ("T",)), "y": Field("i64", ("T",))}


def _length_problem(args: dict) -> str | None:
    return None if args["length"] >= 1 else f"length must be >= 1, got {args['length']}"


def _counting_sampler(args: dict, modulus: int) -> NumpyStreamSampler:
    def draw(batch_size: int, rng: np.random.Generator) -> dict:
        bits = rng.integers(0, 2, size=(batch_size, args["length"]))
        return {"x": bits, "y": np.cumsum(bits, axis=1) % modulus}

    return NumpyStreamSampler(draw, _labelled_fields(args))


register_generator(
    "parity",
    "length: int, seed: int = 0",
    _labelled_fields,
    lambda args: _counting_sampler(args, 2),
    "Running parity (Hahn 2020; Anil et al. 2022, length generalization): x is a uniform bit "
    "string i64[T], y[t] = (x[0] + ... + x[t]) mod 2. T = `length`. The task has no hidden "
    "structure, so `seed` (taken for uniformity with the other tasks) changes nothing.",
    validate=lambda args: _length_problem(args) or seed_problem(args),
    symbols=_length_symbols,
)


def _modulus_problem(args: dict) -> str | None:
    return None if args["modulus"] >= 2 else f"modulus must be >= 2, got {args['modulus']}"


register_generator(
    "modular_counting",
    "length: int, modulus: int = 3",
    _labelled_fields,
    lambda args: _counting_sampler(args, args["modulus"]),
    "Modular counting (Deletang et al. 2023, 'Neural networks and the Chomsky hierarchy'): x is a "
    "uniform bit string i64[T], y[t] = number of ones in x[0..t] mod `modulus`. T = `length`.",
    validate=lambda args: _length_problem(args) or _modulus_problem(args),
    symbols=_length_symbols,
)


@dataclass(frozen=True)
class Dfa:
    transitions: np.ndarray  # [state, symbol] -> next state
    accepting: np.ndarray  # [state] -> bool
    start: int = 0

    @property
    def symbols(self) -> int:
        return self.transitions.shape[1]

    def live(self) -> np.ndarray:
        """States from which some accepting state is still reachable."""
        live = self.accepting.copy()
        for _ in range(len(live)):
            live = live | live[self.transitions].any(axis=1)
        return live


RANDOM_DFA_STATES = 5

NAMED_DFAS = {
    # Even number of 1s.
    "parity": Dfa(np.array([[0, 1], [1, 0]]), np.array([True, False])),
    # Binary numbers read most significant bit first whose value is divisible by 3;
    # the state is the value so far mod 3.
    "mod3": Dfa(np.array([[0, 1], [2, 0], [1, 2]]), np.array([True, False, False])),
    # Tomita grammar 2, (ab)* with a = 0, b = 1; state 2 is the dead state.
    "ab_star": Dfa(np.array([[1, 2], [2, 0], [2, 2]]), np.array([True, False, False])),
}


def make_dfa(name: str, seed: int) -> Dfa:
    """A named DFA, or for 'random' a 5-state binary DFA fixed by the seed."""
    if name in NAMED_DFAS:
        return NAMED_DFAS[name]
    rng = task_rng(seed, "regular_language")
    transitions = rng.integers(0, RANDOM_DFA_STATES, size=(RANDOM_DFA_STATES, 2))
    accepting = np.zeros(RANDOM_DFA_STATES, dtype=bool)
    accepting[rng.choice(RANDOM_DFA_STATES, size=rng.integers(1, RANDOM_DFA_STATES), replace=False)] = True
    return Dfa(transitions, accepting)


def walk_dfa(dfa: Dfa, batch_size: int, length: int, rng: np.random.Generator) -> tuple:
    """Symbols that keep an accepting state reachable, except with probability 1/length any symbol."""
    live_moves = dfa.live()[dfa.transitions]
    live_moves[~live_moves.any(axis=1)] = True  # from a dead state every symbol is as good
    states = np.full(batch_size, dfa.start)
    symbols = np.zeros((batch_size, length), dtype=np.int64)
    labels = np.zeros((batch_size, length), dtype=np.int64)
    for t in range(length):
        allowed = live_moves[states] | (rng.random(batch_size) < 1 / length)[:, None]
        # Uniform among the allowed symbols: the largest of independent uniforms over them.
        symbols[:, t] = np.where(allowed, rng.random((batch_size, dfa.symbols)), -1.0).argmax(axis=1)
        states = dfa.transitions[states, symbols[:, t]]
        labels[:, t] = dfa.accepting[states]
    return symbols, labels


def _dfa_sampler(args: dict) -> NumpyStreamSampler:
    dfa = make_dfa(args["dfa"], args["seed"])

    def draw(batch_size: int, rng: np.random.Generator) -> dict:
        x, y = walk_dfa(dfa, batch_size, args["length"], rng)
        return {"x": x, "y": y}

    sampler = NumpyStreamSampler(draw, _labelled_fields(args))
    sampler.dfa = dfa
    return sampler


def _dfa_problem(args: dict) -> str | None:
    names = [*NAMED_DFAS, "random"]
    if args["dfa"] not in names:
        return f"unknown dfa {args['dfa']!r}; choose one of {', '.join(names)}"
    return None


register_generator(
    "regular_language",
    "length: int, dfa: str = 'parity', seed: int = 0",
    _labelled_fields,
    _dfa_sampler,
    "Recognising a regular language (Tomita 1982; Bhattamishra et al. 2020): x is a binary "
    "string i64[T], y[t] = 1 when the prefix x[0..t] is accepted by the DFA. DFAs: 'parity' "
    "(even number of 1s), 'mod3' (binary number, most significant bit first, divisible by 3), "
    "'ab_star' ((01)*, Tomita 2), 'random' (5 states, transitions and accepting set fixed by "
    "`seed`). Each symbol is uniform among those that keep an accepting state reachable, and "
    "with probability 1/length uniform among all. The sampler exposes `.dfa`.",
    validate=lambda args: _length_problem(args) or _dfa_problem(args) or seed_problem(args),
    symbols=_length_symbols,
)


def dyck_words(batch_size: int, length: int, depth: int, pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Balanced words of exactly `length` brackets nesting at most `depth` deep."""
    tokens = np.zeros((batch_size, length), dtype=np.int64)
    stack = np.zeros((batch_size, depth), dtype=np.int64)
    height = np.zeros(batch_size, dtype=np.int64)
    rows = np.arange(batch_size)
    for t in range(length):
        # Open only if the word can still close in time and stays within the depth bound.
        can_open = (height < depth) & (height + 1 <= length - t - 1)
        must_open = height == 0
        opening = must_open | (can_open & (rng.random(batch_size) < 0.5))
        kind = rng.integers(0, pairs, size=batch_size)
        top = stack[rows, np.maximum(height - 1, 0)]
        tokens[:, t] = np.where(opening, kind, pairs + top)
        stack[rows[opening], height[opening]] = kind[opening]
        height = height + np.where(opening, 1, -1)
    return tokens


def _dyck_sampler(args: dict) -> NumpyStreamSampler:
    def draw(batch_size: int, rng: np.random.Generator) -> dict:
        return {"tokens": dyck_words(batch_size, args["length"], args["depth"], args["pairs"], rng)}

    return NumpyStreamSampler(draw, _dyck_fields(args))


def _dyck_fields(args: dict) -> dict:
    return {"tokens": Field("i64", ("T",))}


def _dyck_problem(args: dict) -> str | None:
    if args["length"] < 2 or args["length"] % 2:
        return f"dyck needs an even length >= 2, got {args['length']}"
    if args["depth"] < 1:
        return f"dyck needs depth >= 1, got {args['depth']}"
    if args["pairs"] < 1:
        return f"dyck needs pairs >= 1, got {args['pairs']}"
    return None


register_generator(
    "dyck",
    "length: int, depth: int, pairs: int = 1",
    _dyck_fields,
    _dyck_sampler,
    "Bounded Dyck-(pairs, depth) words for language modelling (Hewitt et al. 2020; Yao et al. "
    "2021): tokens i64[T] is a balanced bracket word of exactly `length` (even) tokens, nested "
    "at most `depth` deep. Vocabulary 2 * pairs: opening bracket i is token i, its closing "
    "bracket is token pairs + i. At each step the word opens (a uniform bracket kind) or closes "
    "with probability 1/2 each, unless the depth bound, an empty stack or the remaining length "
    "forces one.",
    validate=_dyck_problem,
    symbols=_length_symbols,
)
