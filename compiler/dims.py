"""Symbolic dimension arithmetic: integer polynomials over named dims such as B and T."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FloorDiv:
    """An atom that is not a polynomial: `numerator // divisor` that does not divide evenly."""

    numerator: Sym
    divisor: int

    def __str__(self) -> str:
        return f"({self.numerator}) // {self.divisor}"


Atom = str | FloorDiv
Monomial = tuple  # sorted tuple of atoms, repeats allowed


def _atom_key(atom: Atom) -> str:
    return atom if isinstance(atom, str) else "~" + str(atom)


@dataclass(frozen=True)
class Sym:
    """A dim polynomial with integer coefficients; constant polynomials are always plain ints."""

    terms: tuple  # sorted tuple of (monomial, coefficient), coefficient != 0

    @staticmethod
    def symbol(name: str) -> Sym:
        return Sym((((name,), 1),))

    @staticmethod
    def from_terms(terms: dict) -> Dim:
        kept = {mono: c for mono, c in terms.items() if c != 0}
        if not kept:
            return 0
        if list(kept) == [()]:
            return kept[()]
        ordered = sorted(kept.items(), key=lambda item: (len(item[0]), [_atom_key(a) for a in item[0]]))
        return Sym(tuple(ordered))

    def as_terms(self) -> dict:
        return dict(self.terms)

    def atoms(self) -> set[str]:
        """The named symbols this dim depends on (also inside floor divisions)."""
        names: set[str] = set()
        for mono, _ in self.terms:
            for atom in mono:
                if isinstance(atom, str):
                    names.add(atom)
                else:
                    names |= atom.numerator.atoms() if isinstance(atom.numerator, Sym) else set()
        return names

    def __add__(self, other: Dim) -> Dim:
        return add(self, other)

    __radd__ = __add__

    def __sub__(self, other: Dim) -> Dim:
        return add(self, mul(other, -1))

    def __rsub__(self, other: Dim) -> Dim:
        return add(other, mul(self, -1))

    def __mul__(self, other: Dim) -> Dim:
        return mul(self, other)

    __rmul__ = __mul__

    def __neg__(self) -> Dim:
        return mul(self, -1)

    def __floordiv__(self, other: Dim) -> Dim:
        return floordiv(self, other)

    def __str__(self) -> str:
        return render(self, str)


Dim = int | Sym


def _terms(value: Dim) -> dict:
    if isinstance(value, Sym):
        return value.as_terms()
    return {(): int(value)}


def add(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    out = _terms(a)
    for mono, c in _terms(b).items():
        out[mono] = out.get(mono, 0) + c
    return Sym.from_terms(out)


def mul(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    out: dict = {}
    for ma, ca in _terms(a).items():
        for mb, cb in _terms(b).items():
            mono = tuple(sorted(ma + mb, key=_atom_key))
            out[mono] = out.get(mono, 0) + ca * cb
    return Sym.from_terms(out)


def floordiv(a: Dim, b: Dim) -> Dim:
    if isinstance(b, Sym):
        raise TypeError("division by a symbolic dim is not supported")
    if b == 0:
        raise ZeroDivisionError("division of a dim by zero")
    if isinstance(a, int):
        return a // b
    terms = a.as_terms()
    if all(c % b == 0 for c in terms.values()):
        return Sym.from_terms({mono: c // b for mono, c in terms.items()})
    return Sym((((FloorDiv(a, b),), 1),))


def is_dim(value: object) -> bool:
    return isinstance(value, Sym) or (isinstance(value, int) and not isinstance(value, bool))


def render(value: Dim, name_of) -> str:
    """Writes a dim as an expression; `name_of` maps each named symbol to the text to use."""
    if isinstance(value, int):
        return str(value)
    parts = []
    for index, (mono, coeff) in enumerate(value.terms):
        # `//` binds like `*` and below unary minus, so a floor division next to a factor, a
        # coefficient or a leading minus needs its own parentheses.
        alone = len(mono) == 1 and (coeff == 1 or (coeff == -1 and index > 0))
        factors = [name_of(a) if isinstance(a, str) else _render_floordiv(a, name_of, alone) for a in mono]
        if not factors:
            parts.append((coeff, str(abs(coeff))))
            continue
        text = " * ".join(factors)
        if abs(coeff) != 1:
            text = f"{abs(coeff)} * {text}"
        parts.append((coeff, text))
    out = ""
    for i, (coeff, text) in enumerate(parts):
        if i == 0:
            out = f"-{text}" if coeff < 0 else text
        else:
            out += f" - {text}" if coeff < 0 else f" + {text}"
    return out


def _render_floordiv(atom: FloorDiv, name_of, alone: bool) -> str:
    text = f"({render(atom.numerator, name_of)}) // {atom.divisor}"
    return text if alone else f"({text})"


def substitute(value: Dim, mapping: dict) -> Dim:
    """Replaces named symbols by dims (ints or other polynomials)."""
    if isinstance(value, int):
        return value
    total: Dim = 0
    for mono, coeff in value.terms:
        product: Dim = coeff
        for atom in mono:
            if isinstance(atom, str):
                product = mul(product, mapping.get(atom, Sym.symbol(atom)))
            else:
                product = mul(product, floordiv(substitute(atom.numerator, mapping), atom.divisor))
        total = add(total, product)
    return total


def dims_equal(a: Dim, b: Dim) -> bool:
    return a == b
