"""Helpers the op test modules share: a one-model spec from a `;`-separated body."""

import paperspec


def model_spec(body: str, name: str = "<test>", params: str = "") -> paperspec.Spec:
    """`model M(params) { ... }` with one statement per `; `-separated part of `body`."""
    statements = body.replace("; ", "\n")
    return paperspec.loads(f"model M({params}) {{\n{statements}\n}}\n", name)


def spec_error(body: str, name: str = "<test>") -> paperspec.SpecError:
    """The error checking the model of `body` raises (it must raise one)."""
    try:
        model_spec(body, name).graph()
    except paperspec.SpecError as error:
        return error
    raise AssertionError(f"no error for: {body}")
