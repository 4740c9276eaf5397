"""The `paperspec` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import ast as python_ast
import os
import sys
import time

EXIT_SPEC_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE: a paperspec bug, not bad input


class CommandError(Exception):
    """A usage problem found after parsing arguments (bad --set, unreadable file)."""


def parse_assignment(text: str, flag: str = "--set") -> tuple:
    """`d=64` -> ("d", 64); values are numbers, true/false, or strings."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip().isidentifier():
        raise CommandError(f"{flag} expects NAME=VALUE, got {text!r}")
    raw = raw.strip()
    words = {"true": True, "false": False, "none": None}
    if raw in words:
        return name.strip(), words[raw]
    try:
        value = python_ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    if isinstance(value, list):
        value = tuple(value)
    return name.strip(), value


def _positive_int(text: str) -> int:
    value = int(text) if text.strip().isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _params(args) -> dict:
    return dict(parse_assignment(item) for item in args.set or [])


def _sizes(args) -> dict:
    sizes = {}
    for item in args.size or []:
        name, value = parse_assignment(item, "--size")
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise CommandError(f"--size {item}: sizes must be positive integers")
        sizes[name] = value
    return sizes


def _load(path: str, quick: bool = False):
    from paperspec import load

    if not os.path.isfile(path):
        raise CommandError(f"no such spec file: {path}")
    return load(path, quick=quick)


def cmd_check(args) -> int:
    failed = 0
    for path in args.files:
        try:
            spec = _load(path)
            models = spec.check()
        except CommandError:
            raise
        except Exception as error:  # noqa: BLE001 - SpecError is reported per file, others re-raised below
            from paperspec import SpecError

            if not isinstance(error, SpecError):
                raise
            print(error.format(), file=sys.stderr)
            failed += 1
            continue
        for model in models:
            for warning in spec.warnings(model):
                print(warning.format(), file=sys.stderr)
        procedures, claims = spec.procedures(), spec.claims()
        for warning in spec.procedure_warnings():
            print(warning.format(), file=sys.stderr)
        extra = f", {_count(len(procedures), 'procedure')}, {_count(len(claims), 'claim')}" if procedures else ""
        print(f"ok  {path}  ({_count(len(models), 'model')}: {', '.join(models) or '-'}{extra})")
    return EXIT_SPEC_ERROR if failed else 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def cmd_compile(args) -> int:
    spec = _load(args.file)
    source = spec.source(args.model, **_params(args))
    if args.output:
        directory = os.path.dirname(os.path.abspath(args.output))
        os.makedirs(directory, exist_ok=True)
        temporary = args.output + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(source)
        os.replace(temporary, args.output)
        print(f"wrote {args.output} ({len(source.splitlines())} lines)")
    else:
        sys.stdout.write(source)
    return 0


def cmd_summary(args) -> int:
    from paperspec.compiler.summary import format_table, summarize

    spec = _load(args.file)
    graph = spec.graph(args.model, **_params(args))
    title = f" — {spec.title}" if spec.title else ""
    print(f"{spec.path}: {graph.block}{title}")
    for cite in spec.cites:
        print(f"cite: {cite}")
    print(format_table(summarize(graph)))
    return 0


def cmd_forward(args) -> int:
    import torch

    from paperspec.runtime.inputs import example_inputs, symbol_sizes

    spec = _load(args.file)
    params = _params(args)
    graph = spec.graph(args.model, **params)
    module = spec.build(args.model, **params).to(args.device)
    sizes = symbol_sizes(graph, _sizes(args))
    inputs = example_inputs(graph, sizes, seed=args.seed, device=args.device)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    try:
        outputs = module(*inputs.values())
    except ValueError as error:
        if not str(error).startswith(f"{graph.block}: input `"):
            raise
        raise CommandError(f"--size: {error}") from None  # sizes the spec's input declarations rule out
    forward_ms = (time.perf_counter() - start) * 1000
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    print(f"{graph.block} on {args.device} with {', '.join(f'{k}={v}' for k, v in sizes.items()) or 'fixed sizes'}")
    for name, value in inputs.items():
        print(f"  in  {name}: {tuple(value.shape)} {value.dtype}")
    for (name, _, _), value in zip(graph.outputs, outputs):
        print(f"  out {name}: {tuple(value.shape)} {value.dtype}")
    floats = [o for o in outputs if o.is_floating_point()]
    if floats and any(p.requires_grad for p in module.parameters()):
        start = time.perf_counter()
        sum(o.float().square().mean() for o in floats).backward()
        backward_ms = (time.perf_counter() - start) * 1000
        grads = sum(1 for p in module.parameters() if p.grad is not None)
        print(f"  forward {forward_ms:.1f} ms, backward {backward_ms:.1f} ms, gradients for {grads} parameter tensors")
    else:
        print(f"  forward {forward_ms:.1f} ms")
    print(f"  parameters: {spec.parameter_count(args.model, **params):,}")
    return 0


def cmd_train(args) -> int:
    from paperspec.runtime.distributed import current_world, launch
    from paperspec.runtime.train import Trainer

    if args.nproc > 1 and not current_world().distributed:
        spec = _load(args.file, args.quick)
        spec.procedure(args.procedure)  # report spec errors once, before starting workers
        return launch(_without_nproc(sys.argv[1:] if args.argv is None else args.argv), args.nproc)
    spec = _load(args.file, args.quick)
    trainer = Trainer(spec, args.procedure, device=args.device, out_root=args.out, steps=args.steps, progress=_progress(args))
    result = trainer.run(resume=args.resume)
    if current_world().main:
        _print_result(result)
    return 0


def _without_nproc(argv: list) -> list:
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            out.append(item)
    return out


def cmd_reproduce(args) -> int:
    """Reproduces each spec in turn; exit 1 if a claim fails (or, with --quick, a run does not
    improve). With --report, the claims table in that Markdown file is regenerated."""
    from paperspec.runtime.report import write_report

    reports, failed = [], 0
    for index, path in enumerate(args.files):
        if len(args.files) > 1:
            print(f"{chr(10) if index else ''}== {path}")
        try:
            report, spec_failed = _reproduce(path, args)
        except (CommandError, *_spec_or_training_error()) as error:
            if len(args.files) == 1:
                raise
            _print_error(error)  # one broken spec does not stop the others
            report, spec_failed = None, 1
        failed += spec_failed
        if report is not None:
            reports.append(report)
    if args.report and reports:
        write_report(args.report, reports)
        print(f"\nwrote the claims of {_count(len(reports), 'spec')} to {args.report}")
    return EXIT_SPEC_ERROR if failed else 0


def _reproduce(path: str, args) -> tuple:
    """(SpecReport or None for a quick run, number of failures) for one spec file."""
    from paperspec.runtime.claims import check_claims, format_claims
    from paperspec.runtime.report import SpecReport
    from paperspec.runtime.train import Trainer

    spec = _load(path, args.quick)
    procedures = spec.procedures()
    claims = spec.claims()
    if not procedures:
        raise CommandError(f"{path} has no `train` procedure to reproduce")
    wall, cpu = time.perf_counter(), time.process_time()
    runs: dict = {}
    for name in procedures:
        teacher_runs = {n: r.run_dir for n, r in runs.items()}
        trainer = Trainer(spec, name, device=args.device, out_root=args.out, steps=args.steps, progress=_progress(args), teacher_runs=teacher_runs)
        runs[name] = trainer.run()
        _print_result(runs[name])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if args.quick:
        return None, _check_improvement(runs, len(claims))
    if not claims:
        print("no `expect` claims to check")
        return None, 0
    results = check_claims(claims, runs)
    print()
    print(format_claims(results))
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed  ({wall:.1f} s wall, {cpu:.1f} s CPU)")
    return SpecReport(path, spec.cites, results, wall, cpu), failed


def _check_improvement(runs: dict, claims: int) -> int:
    """A quick run's verdict: every procedure that trains ends with a lower loss than it began."""
    print()
    failed = 0
    for name, result in runs.items():
        if result.improved is None:
            print(f"{name}: evaluation only")
            continue
        failed += not result.improved
        verdict = "improved" if result.improved else "DID NOT IMPROVE (not beyond minibatch noise)"
        print(f"{name}: training loss {result.first_loss:.4g} -> {result.last_loss:.4g} (first and last quarter of the steps)  {verdict}")
    print(f"quick run: {_count(claims, 'claim')} not checked (run without --quick to check them)")
    return failed


def _spec_or_training_error() -> tuple:
    from paperspec.compiler.diagnostics import SpecError, UsageError

    return (SpecError, UsageError, _training_error())


def _print_error(error: Exception) -> None:
    from paperspec.compiler.diagnostics import SpecError

    print(error.format() if isinstance(error, SpecError) else f"paperspec: error: {error}", file=sys.stderr)


def _progress(args):
    return False if args.quiet else None


def _print_result(result) -> None:
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items() if k != "step" and isinstance(v, float) and v == v)
    print(f"{result.procedure}: {result.steps} steps, {metrics}  ({result.run_dir})")


def _checkpoint_params(spec, args) -> dict:
    """With --weights from a training run and no --set: the parameters the run's model had."""
    from paperspec.runtime.checkpoint import checkpoint_metadata, weights_file

    if not args.weights:
        return {}
    try:
        path = weights_file(args.weights)
    except FileNotFoundError as error:
        raise CommandError(str(error)) from None
    record = checkpoint_metadata(path).get("models", {}).get(path.stem)
    model = spec.default_model(args.model)
    if not isinstance(record, dict) or record.get("block") != model:
        return {}
    return record.get("params", {})


def cmd_export(args) -> int:
    from paperspec.compiler.backends.onnx import check_opset, needs_external_data
    from paperspec.runtime.onnx import VerificationError, export, read_weights, verify

    check_opset(args.opset)
    spec = _load(args.file)
    params, sizes = _params(args) or _checkpoint_params(spec, args), _sizes(args)
    module = spec.build(args.model, **params)
    if args.weights:
        proto = export(spec, args.model, params, args.weights, args.opset, via=args.via)  # checks that they fit
        module.load_state_dict(read_weights(args.weights), strict=False)
    else:
        proto = export(spec, args.model, params, module, args.opset, via=args.via)
    external = args.external_data or needs_external_data(proto)
    _write_onnx(proto, args.output, external)
    weights = args.weights or "a fresh initialisation (no --weights)"
    print(
        f"wrote {args.output}{f' and {args.output}.data' if external else ''} "
        f"({'torch.onnx.export' if args.via == 'torch' else 'direct from the IR'}): opset {args.opset}, "
        f"{len(proto.graph.node)} nodes, {len(proto.graph.initializer)} initializers, weights from {weights}"
    )
    if not args.verify:
        return 0
    try:
        report = verify(spec, args.model, params, sizes, module=module, onnx_model=args.output)  # the file as written
    except VerificationError as error:
        print(error.report.format())
        return EXIT_SPEC_ERROR
    print(report.format())
    return 0


def _write_onnx(proto, path: str, external: bool = False) -> None:
    from paperspec.runtime.onnx import save_onnx

    save_onnx(proto, path, external)


def cmd_run(args) -> int:
    import numpy as np

    from paperspec.runtime.onnx import InputError, OnnxSession

    inputs = {}
    for item in args.input or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip():
            raise CommandError(f"--input expects NAME=FILE.npy, got {item!r}")
        inputs[name.strip()] = _read_array(path)
    session = OnnxSession(args.model, ["CPUExecutionProvider"] if args.provider == "cpu" else None)
    try:
        outputs = session.run(inputs)
    except InputError as error:
        raise CommandError(str(error)) from None
    print(f"{args.model} on {session.provider}")
    for name, value in outputs.items():
        stats = f", mean {value.mean():.4g}, min {value.min():.4g}, max {value.max():.4g}" if value.size and value.dtype.kind in "fiu" else ""
        print(f"  out {name}: {list(value.shape)} {value.dtype}{stats}")
    if args.output:
        np.savez(args.output, **outputs)
        print(f"wrote {args.output}")
    return 0


def _read_array(path: str):
    import numpy as np

    if not os.path.isfile(path):
        raise CommandError(f"no such input file: {path}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise CommandError(f"cannot read {path} as a .npy array: {error}") from None


def cmd_plot(args) -> int:
    from paperspec.runtime.plot import plot_run

    if not os.path.isdir(args.run_dir):
        raise CommandError(f"no such run folder: {args.run_dir}")
    try:
        path = plot_run(args.run_dir, args.output)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        raise CommandError(str(error)) from None
    print(f"wrote {path}")
    return 0


def cmd_ops(args) -> int:
    from paperspec.compiler.ops.base import all_ops

    ops = all_ops()
    by_category: dict[str, list] = {}
    for op in ops.values():
        by_category.setdefault(op.category, []).append(op)
    for category in sorted(by_category):
        print(f"{category}:")
        for op in sorted(by_category[category], key=lambda o: o.name):
            print(f"  {op.describe()}")
            print(f"      {op.doc}")
    return 0


def _registries() -> dict:
    """What `paperspec list` shows: each kind's registered names with signatures and docs."""
    from paperspec.runtime.data import all_generators
    from paperspec.runtime.optim import all_optimizers
    from paperspec.runtime.schedules import all_schedules
    from paperspec.runtime.updates import all_update_rules
    from paperspec.runtime.weightspace import all_weight_space_functions

    return {
        "data": all_generators,
        "optimizers": all_optimizers,
        "schedules": all_schedules,
        "updates": all_update_rules,
        "weight-space": all_weight_space_functions,
    }


def cmd_list(args) -> int:
    if args.kind == "ops":
        return cmd_ops(args)
    for definition in sorted(_registries()[args.kind]().values(), key=lambda d: d.name):
        print(f"  {definition.describe()}")
        print(f"      {definition.doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paperspec", description="Check, compile and run .pspec model specs.")
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="parse, elaborate and shape-check spec files")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(run=cmd_check)

    def model_options(sub):
        sub.add_argument("file", metavar="FILE")
        sub.add_argument("--model", "-m", help="model to use (default: the only model in the file)")
        sub.add_argument("--set", action="append", metavar="NAME=VALUE", help="override a model parameter")

    compile_ = commands.add_parser("compile", help="write the generated PyTorch source")
    model_options(compile_)
    compile_.add_argument("--emit", choices=["torch"], default="torch", help="backend (onnx: see `paperspec export`)")
    compile_.add_argument("-o", "--output", help="file to write (default: stdout)")
    compile_.set_defaults(run=cmd_compile)

    summary = commands.add_parser("summary", help="table of submodules, output shapes and parameter counts")
    model_options(summary)
    summary.set_defaults(run=cmd_summary)

    forward = commands.add_parser("forward", help="build the model and run forward and backward on random inputs")
    model_options(forward)
    forward.add_argument("--size", action="append", metavar="DIM=N", help="size of a symbolic dim, e.g. T=32")
    forward.add_argument("--device", default="cpu")
    forward.add_argument("--seed", type=int, default=0)
    forward.set_defaults(run=cmd_forward)

    def run_options(sub):
        sub.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
        sub.add_argument("--steps", type=_positive_int, help="stop each procedure after this many steps")
        sub.add_argument("--out", default="runs", help="folder for runs (default: runs/)")
        sub.add_argument("--quiet", action="store_true", help="no progress bar")
        sub.add_argument(
            "--quick", action="store_true",
            help="the spec's quick settings (`quick` is true): checks the run works and training improves, not the claims",
        )

    train = commands.add_parser("train", help="run a training procedure of a spec")
    train.add_argument("file", metavar="FILE")
    train.add_argument("procedure", nargs="?", metavar="PROC", help="procedure (default: the only one)")
    run_options(train)
    train.add_argument("--resume", action="store_true", help="continue the latest run from its last checkpoint")
    train.add_argument("--nproc", type=int, default=1, help="train with N processes (DistributedDataParallel via torchrun)")
    train.set_defaults(run=cmd_train)

    reproduce = commands.add_parser("reproduce", help="run every procedure in order and check the `expect` claims")
    reproduce.add_argument("files", nargs="+", metavar="FILE")
    reproduce.add_argument(
        "--report", metavar="FILE.md",
        help="regenerate the claims table in this Markdown file (rows of other specs stay)",
    )
    run_options(reproduce)
    reproduce.set_defaults(run=cmd_reproduce)

    export = commands.add_parser("export", help="write the model as ONNX (inference semantics)")
    model_options(export)
    export.add_argument(
        "--weights", metavar="PATH", help="safetensors weights, or a run or checkpoint folder (default: a fresh initialisation)"
    )
    export.add_argument("--opset", type=int, default=21, help="ONNX opset (default: 21)")
    export.add_argument(
        "--external-data", action="store_true", help="weights in a separate MODEL.onnx.data file (automatic above 2 GB)"
    )
    export.add_argument(
        "--via", choices=["direct", "torch"], default="direct",
        help="direct: emitted from the IR (default); torch: torch.onnx.export(dynamo=True) of the built module, for comparison",
    )
    export.add_argument("--verify", action="store_true", help="compare with PyTorch in onnxruntime at two sizes of each dynamic dim")
    export.add_argument("--size", action="append", metavar="DIM=N", help="example size of a symbolic dim for --verify")
    export.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    export.set_defaults(run=cmd_export)

    run = commands.add_parser("run", help="run an exported .onnx model in onnxruntime")
    run.add_argument("model", metavar="MODEL.onnx")
    run.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="an input as a .npy file")
    run.add_argument("--provider", choices=["auto", "cpu"], default="auto", help="auto: CUDA when available, else CPU")
    run.add_argument("-o", "--output", help="write the outputs to this .npz file")
    run.set_defaults(run=cmd_run)

    plot = commands.add_parser("plot", help="write a run's loss and metric curves as a PNG")
    plot.add_argument("run_dir", metavar="RUN", help="a run folder, runs/<spec>/<procedure>/<time>")
    plot.add_argument("-o", "--output", help="PNG to write (default: RUN/metrics.png)")
    plot.set_defaults(run=cmd_plot)

    ops = commands.add_parser("ops", help="list every registered op with its signature")
    ops.set_defaults(run=cmd_ops)

    listing = commands.add_parser("list", help="list what a spec can name: ops, data generators, optimizers, schedules, update rules, weight-space functions")
    listing.add_argument("kind", choices=["ops", "data", "optimizers", "schedules", "updates", "weight-space"])
    listing.set_defaults(run=cmd_list)
    return parser


def _training_error():
    from paperspec.runtime.train import TrainingError

    return TrainingError


def main(argv: list | None = None) -> int:
    from paperspec.compiler.diagnostics import SpecError, UsageError

    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return args.run(args)
    except UsageError as error:
        print(f"paperspec: error: {error.message}" + (f"\nhint: {error.hint}" if error.hint else ""), file=sys.stderr)
        return EXIT_USAGE
    except SpecError as error:
        print(error.format(), file=sys.stderr)
        return EXIT_SPEC_ERROR
    except CommandError as error:
        print(f"paperspec: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return 0
    except _training_error() as error:
        print(f"paperspec: error: {error}", file=sys.stderr)
        return EXIT_SPEC_ERROR
    except Exception as error:  # noqa: BLE001 - last resort: report a bug without a wall of traceback
        if os.environ.get("PAPERSPEC_DEBUG"):
            raise
        print(f"paperspec: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        print("hint: this is a paperspec bug; set PAPERSPEC_DEBUG=1 to see the traceback", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
