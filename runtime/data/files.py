"""Datasets read from files (npz, safetensors, csv); fields come from the file's header alone."""

from __future__ import annotations

import csv as csv_module
import zipfile
from pathlib import Path

import numpy as np

from paperspec.runtime.data.base import Field, TensorSampler, as_tensors, register_generator

# How a stored dtype is exposed: floats as f32, integers as i64 (token ids, labels).
SAFETENSORS_DTYPES = {
    **dict.fromkeys(("F16", "BF16", "F32", "F64"), "f32"),
    **dict.fromkeys(("I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64"), "i64"),
    "BOOL": "bool",
}


def existing_file(path: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"no such file: {path!r} (relative paths are from the working directory)")
    return file


def field_dtype(dtype: np.dtype, name: str, path: str) -> str:
    if dtype.kind == "f":
        return "f32"
    if dtype.kind in "iu":
        return "i64"
    if dtype.kind == "b":
        return "bool"
    raise ValueError(f"array {name!r} of {path!r} has dtype {dtype}; data fields are numbers or booleans")


def select(available: dict, wanted: object, path: str) -> dict:
    """The arrays named by `fields` (one name, a list of names, or none for all), as Fields."""
    names = list(available) if wanted is None else [wanted] if isinstance(wanted, str) else list(wanted)
    for name in names:
        if name not in available:
            raise ValueError(f"{path!r} has no array {name!r}; it has: {', '.join(available) or 'none'}")
    chosen = {name: available[name] for name in names}
    lengths = {shape[0] if shape else None for _, shape in chosen.values()}
    if None in lengths or len(lengths) != 1:
        sizes = ", ".join(f"{name}: {list(shape)}" for name, (_, shape) in chosen.items())
        raise ValueError(f"arrays of {path!r} must share their first (example) dim; got {sizes}")
    return {name: Field(dtype, tuple(shape[1:])) for name, (dtype, shape) in chosen.items()}


def npz_headers(path: str) -> dict:
    """{array name: (field dtype, shape)} from each member's .npy header; no array is read."""
    headers = {}
    try:
        with zipfile.ZipFile(existing_file(path)) as archive:
            for member in archive.namelist():
                with archive.open(member) as stream:
                    version = np.lib.format.read_magic(stream)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(stream)
                name = member.removesuffix(".npy")
                headers[name] = (field_dtype(dtype, name, path), shape)
    except zipfile.BadZipFile:
        raise ValueError(f"{path!r} is not an .npz archive") from None
    return headers


def _npz_fields(args: dict) -> dict:
    return select(npz_headers(args["path"]), args["fields"], args["path"])


def _npz_sampler(args: dict) -> TensorSampler:
    fields = _npz_fields(args)
    with np.load(existing_file(args["path"]), allow_pickle=False) as archive:
        return TensorSampler(as_tensors({name: archive[name] for name in fields}, fields))


register_generator(
    "npz",
    "path: str, fields: any? = none",
    _npz_fields,
    _npz_sampler,
    "Arrays of a NumPy .npz archive (np.savez) as a finite dataset: one field per array named "
    "by `fields` (a name or a list; none for all), sharing their first dim, the examples; a "
    "field's shape is the array's shape without it. Floats become f32, integers i64. Batches "
    "are random examples, distinct within a batch while the dataset allows.",
)


def safetensors_headers(path: str) -> dict:
    """{tensor name: (field dtype, shape)} from the safetensors header; no tensor is read."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(existing_file(path)), framework="numpy") as file:
            slices = {name: file.get_slice(name) for name in file.keys()}
            return {name: (_safetensors_dtype(s.get_dtype(), name, path), tuple(s.get_shape())) for name, s in slices.items()}
    except SafetensorError as error:
        raise ValueError(f"{path!r} is not a safetensors file: {error}") from None


def _safetensors_dtype(dtype: str, name: str, path: str) -> str:
    if dtype not in SAFETENSORS_DTYPES:
        raise ValueError(f"tensor {name!r} of {path!r} has dtype {dtype}; data fields are numbers or booleans")
    return SAFETENSORS_DTYPES[dtype]


def _safetensors_fields(args: dict) -> dict:
    return select(safetensors_headers(args["path"]), args["fields"], args["path"])


def _safetensors_sampler(args: dict) -> TensorSampler:
    from safetensors import safe_open

    from paperspec.runtime.data.base import torch_dtype

    fields = _safetensors_fields(args)
    with safe_open(str(existing_file(args["path"])), framework="pt") as file:
        return TensorSampler({name: file.get_tensor(name).to(torch_dtype(field.dtype)) for name, field in fields.items()})


register_generator(
    "safetensors",
    "path: str, fields: any? = none",
    _safetensors_fields,
    _safetensors_sampler,
    "Tensors of a .safetensors file as a finite dataset, read like `npz`: one field per tensor "
    "named by `fields` (none for all), sharing their first dim; floats (bf16 too) become f32, "
    "integers i64.",
)

TARGET_DTYPES = ("i64", "f32")


def csv_columns(path: str) -> list:
    with existing_file(path).open(newline="") as file:
        header = next(csv_module.reader(file), None)
    if not header:
        raise ValueError(f"{path!r} is empty; a csv file starts with a header line of column names")
    return [name.strip() for name in header]


def _csv_fields(args: dict) -> dict:
    columns, target = csv_columns(args["path"]), args["target"]
    if target is not None and target not in columns:
        raise ValueError(f"{args['path']!r} has no column {target!r}; it has: {', '.join(columns)}")
    features = [name for name in columns if name != target]
    if not features:
        raise ValueError(f"{args['path']!r} has no feature columns besides the target {target!r}")
    fields = {"x": Field("f32", (len(features),))}
    if target is not None:
        fields["y"] = Field(args["target_dtype"], ())
    return fields


def read_csv_table(path: str) -> np.ndarray:
    try:
        table = np.loadtxt(existing_file(path), delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"{path!r} holds a value that is not a number: {error}") from None
    if not len(table):
        raise ValueError(f"{path!r} has a header but no rows")
    return table


def _csv_sampler(args: dict) -> TensorSampler:
    fields, columns = _csv_fields(args), csv_columns(args["path"])
    table = read_csv_table(args["path"])
    target = columns.index(args["target"]) if args["target"] is not None else None
    arrays = {"x": np.delete(table, target, axis=1) if target is not None else table}
    if target is not None:
        labels = table[:, target]
        if args["target_dtype"] == "i64" and not np.array_equal(labels, np.round(labels)):
            raise ValueError(f"column {args['target']!r} of {args['path']!r} is not integral; use target_dtype = 'f32'")
        arrays["y"] = labels
    return TensorSampler(as_tensors(arrays, fields))


def _csv_problem(args: dict) -> str | None:
    if args["target_dtype"] not in TARGET_DTYPES:
        return f"target_dtype must be 'i64' (classes) or 'f32' (regression), got {args['target_dtype']!r}"
    return None


register_generator(
    "csv",
    "path: str, target: str? = none, target_dtype: str = 'i64'",
    _csv_fields,
    _csv_sampler,
    "A numeric comma-separated table with a header line, as a finite dataset: x f32[C] holds "
    "every column except `target`, in file order; with a target, y holds that column as "
    "`target_dtype` ('i64' class labels, or 'f32' for regression) with shape [].",
    validate=_csv_problem,
)
