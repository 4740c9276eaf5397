"""Flow-matching problems: a source sample, a target sample and a time, drawn independently."""

from __future__ import annotations

from typing import TYPE_CHECKING

from paperspec.runtime.data.base import Field, StreamSampler, get_generator, register_generator

if TYPE_CHECKING:
    import torch


def _pair_fields(args: dict) -> dict:
    return {"x0": Field("f32", (2,)), "x1": Field("f32", (2,)), "y": Field("i64", ()), "t": Field("f32", (1,))}


def _pair_sampler(args: dict) -> StreamSampler:
    source = get_generator("eight_gaussians")
    target = get_generator("two_moons")
    gaussians = source.sampler(source.bind(radius=args["radius"], std=args["std"]))
    moons = target.sampler(target.bind(noise=args["noise"]))

    def draw(batch_size: int, generator: torch.Generator) -> dict:
        import torch

        x0 = gaussians.sample(batch_size, generator)["x"]
        x1 = moons.sample(batch_size, generator)
        t = torch.rand(batch_size, 1, generator=generator)
        return {"x0": x0, "x1": x1["x"], "y": x1["y"], "t": t}

    return StreamSampler(draw)


def _pair_problem(args: dict) -> str | None:
    if args["radius"] <= 0 or args["std"] < 0 or args["noise"] < 0:
        return (
            "gaussians_to_moons needs radius > 0, std >= 0 and noise >= 0, "
            f"got {args['radius']}, {args['std']} and {args['noise']}"
        )
    return None


register_generator(
    "gaussians_to_moons",
    "radius: float = 2.0, std: float = 0.02, noise: float = 0.1",
    _pair_fields,
    _pair_sampler,
    "The 8-Gaussians-to-moons flow-matching problem (Tong et al. 2023; Cheng and Schwing 2025), "
    "each row an independent coupling: x0 f32[2] from eight_gaussians(radius, std), x1 f32[2] "
    "and its moon y i64 from two_moons(noise), and a time t f32[1] ~ U[0, 1].",
    validate=_pair_problem,
)
