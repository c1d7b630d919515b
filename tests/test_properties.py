"""Hypothesis properties of the components' behaviour (torch backend)."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lowcam

EPS = 1.1920928955078125e-07
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)

unit = st.floats(0.0, 1.0, allow_nan=False)
interior = st.floats(1e-4, 1 - 1e-4, allow_nan=False)
mus = st.floats(0.05, 0.95)
sigmas = st.floats(0.02, 0.5)
betas = st.floats(0.0, 1.0)
sizes = st.integers(1, 9)
seeds = st.integers(0, 2**31 - 1)


def rand(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def entropy(values: torch.Tensor, **kwargs: float) -> torch.Tensor:
    return lowcam.weighted_entropy_loss(
        values.view(1, 1, 1, -1), reduction="none", backend="torch", **kwargs
    ).flatten()  # type: ignore[arg-type]


@SETTINGS
@given(st.lists(unit, min_size=1, max_size=64), mus, sigmas, betas)
def test_entropy_is_non_negative(values: list[float], mu: float, sigma: float, beta: float) -> None:
    out = entropy(torch.tensor(values, dtype=torch.float64), mu=mu, sigma=sigma, beta=beta)
    # ε inside the logs makes the loss at exactly 0 or 1 equal to -log(1+ε)·w, a hair below zero.
    assert bool((out >= -math.log1p(EPS) * (1 + beta) - 1e-18).all())


@SETTINGS
@given(mus, sigmas, betas)
def test_entropy_vanishes_at_zero_and_one(mu: float, sigma: float, beta: float) -> None:
    out = entropy(torch.tensor([0.0, 1.0], dtype=torch.float64), mu=mu, sigma=sigma, beta=beta)
    assert bool((out.abs() <= 2 * EPS * (1 + beta)).all())


@SETTINGS
@given(st.lists(unit, min_size=1, max_size=64), sigmas, betas)
def test_entropy_is_symmetric_when_mu_is_half(values: list[float], sigma: float, beta: float) -> None:
    p = torch.tensor(values, dtype=torch.float64)
    torch.testing.assert_close(
        entropy(p, mu=0.5, sigma=sigma, beta=beta),
        entropy(1 - p, mu=0.5, sigma=sigma, beta=beta),
        rtol=1e-9,
        atol=1e-12,
    )


@SETTINGS
@given(mus, sigmas, betas)
def test_entropy_peaks_between_mu_and_one_half(mu: float, sigma: float, beta: float) -> None:
    grid = torch.linspace(0, 1, 2001, dtype=torch.float64)
    peak = float(grid[entropy(grid, mu=mu, sigma=sigma, beta=beta).argmax()])
    assert min(mu, 0.5) - 1e-3 <= peak <= max(mu, 0.5) + 1e-3


@SETTINGS
@given(st.floats(0.15, 0.85), st.floats(0.01, 0.04))
def test_entropy_peaks_near_mu_when_the_weight_is_narrow(mu: float, sigma: float) -> None:
    grid = torch.linspace(0, 1, 20001, dtype=torch.float64)
    peak = float(grid[entropy(grid, mu=mu, sigma=sigma).argmax()])
    assert abs(peak - mu) < sigma


@SETTINGS
@given(st.lists(interior, min_size=1, max_size=64), sigmas, betas)
def test_entropy_gradient_pushes_away_from_one_half(values: list[float], sigma: float, beta: float) -> None:
    p = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    entropy(p, mu=0.5, sigma=sigma, beta=beta).sum().backward()
    # Gradient descent moves p by -grad: away from μ means -grad has the sign of (p - μ).
    assert bool((-p.grad * (p.detach() - 0.5) >= 0).all())


@SETTINGS
@given(st.lists(interior, min_size=1, max_size=64), mus, sigmas)
def test_entropy_gradient_pushes_away_from_mu_outside_the_crest(
    values: list[float], mu: float, sigma: float
) -> None:
    p = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    entropy(p, mu=mu, sigma=sigma).sum().backward()
    outside = (p.detach() < min(mu, 0.5)) | (p.detach() > max(mu, 0.5))
    assert bool((-p.grad * (p.detach() - mu) >= 0)[outside].all())


@SETTINGS
@given(sizes, sizes, sizes, seeds)
def test_entropy_reductions_agree(batch: int, height: int, width: int, seed: int) -> None:
    p = rand((batch, 1, height, width), seed)
    none = lowcam.weighted_entropy_loss(p, reduction="none", backend="torch")
    torch.testing.assert_close(lowcam.weighted_entropy_loss(p, reduction="sum", backend="torch"), none.sum())
    torch.testing.assert_close(
        lowcam.weighted_entropy_loss(p, reduction="mean", backend="torch"), none.mean()
    )


def area_inputs(
    batch: int, classes: int, height: int, width: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(batch, 1, height, width, generator=g, dtype=torch.float64)
    maps = torch.randn(batch, classes, height, width, generator=g, dtype=torch.float64)
    logits = torch.randn(batch, classes, generator=g, dtype=torch.float64)
    return p, maps, logits


@SETTINGS
@given(sizes, st.integers(2, 12), sizes, sizes, seeds, st.data())
def test_area_reductions_agree(
    batch: int, classes: int, height: int, width: int, seed: int, data: st.DataObject
) -> None:
    topk = data.draw(st.integers(1, classes))
    skip = data.draw(st.integers(0, topk - 1))
    p, maps, logits = area_inputs(batch, classes, height, width, seed)
    kwargs = {"topk": topk, "skip": skip, "backend": "torch"}
    none = lowcam.area_loss(p, maps, logits, reduction="none", **kwargs)  # type: ignore[arg-type]
    assert none.shape == (batch,)
    torch.testing.assert_close(lowcam.area_loss(p, maps, logits, reduction="sum", **kwargs), none.sum())  # type: ignore[arg-type]
    torch.testing.assert_close(lowcam.area_loss(p, maps, logits, reduction="mean", **kwargs), none.mean())  # type: ignore[arg-type]


@SETTINGS
@given(sizes, st.integers(2, 12), sizes, sizes, seeds, st.data())
def test_area_is_monotone_in_every_activation(
    batch: int, classes: int, height: int, width: int, seed: int, data: st.DataObject
) -> None:
    topk = data.draw(st.integers(1, classes))
    skip = data.draw(st.integers(0, topk - 1))
    p, maps, logits = area_inputs(batch, classes, height, width, seed)
    base = lowcam.area_loss(p, maps, logits, topk=topk, skip=skip, reduction="none", backend="torch")
    bump_p = rand(p.shape, seed + 1)
    bump_maps = rand(maps.shape, seed + 2) * (rand(maps.shape, seed + 3) > 0.5)
    up = lowcam.area_loss(
        p + bump_p, maps + bump_maps, logits, topk=topk, skip=skip, reduction="none", backend="torch"
    )
    assert bool((up >= base - 1e-12).all())
    assert bool((up > base).all())  # p grew everywhere, so every sample's loss grows strictly


@SETTINGS
@given(sizes, st.integers(4, 12), sizes, sizes, seeds, st.data())
def test_area_ignores_the_top_skip_classes_and_those_past_topk(
    batch: int, classes: int, height: int, width: int, seed: int, data: st.DataObject
) -> None:
    topk = data.draw(st.integers(2, classes))
    skip = data.draw(st.integers(1, topk - 1))
    p, maps, logits = area_inputs(batch, classes, height, width, seed)
    base = lowcam.area_loss(p, maps, logits, topk=topk, skip=skip, reduction="none", backend="torch")
    ranked = logits.argsort(dim=1, descending=True)
    ignored = torch.cat([ranked[:, :skip], ranked[:, topk:]], dim=1)
    changed = maps.clone()
    changed[torch.arange(batch).unsqueeze(1), ignored] += 100.0
    after = lowcam.area_loss(p, changed, logits, topk=topk, skip=skip, reduction="none", backend="torch")
    torch.testing.assert_close(after, base)
    penalised = ranked[:, skip:topk]
    changed[torch.arange(batch).unsqueeze(1), penalised] += 1.0
    raised = lowcam.area_loss(p, changed, logits, topk=topk, skip=skip, reduction="none", backend="torch")
    torch.testing.assert_close(raised, base + (topk - skip))


erasing_settings = st.fixed_dictionaries(
    {
        "erase_prob": unit,
        "min_factor": st.floats(0.0, 0.5),
        "max_factor": st.floats(0.5, 1.0),
        "min_size": st.one_of(st.integers(0, 3), st.floats(0.01, 0.99)),
        "per_sample_factor": st.booleans(),
    }
)


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 20), st.integers(1, 20), seeds, erasing_settings)
def test_erasing_invariants(
    batch: int, height: int, width: int, seed: int, kwargs: dict[str, object]
) -> None:
    a = rand((batch, 1, height, width), seed) ** 3
    gen = torch.Generator().manual_seed(seed)
    out, region = lowcam.attentive_erasing(a, generator=gen, backend="torch", **kwargs)  # type: ignore[arg-type]
    squashed = 0.6 * a + 0.2
    assert out.shape == a.shape and region.shape == a.shape
    assert torch.equal(out[~region], squashed[~region])  # nothing outside the region is touched
    inside = out[region]
    assert bool(((inside == 0) | (inside == squashed[region])).all())  # inside: dropped or squashed
    assert bool(((out >= 0) & (out <= 1)).all())
    flat = a.flatten(1)
    lowest_threshold = flat.amax(1) - (flat.amax(1) - flat.amin(1)) * float(kwargs["max_factor"])  # type: ignore[arg-type]
    assert bool((~region.flatten(1) | (flat > lowest_threshold.unsqueeze(1))).all())
    again = lowcam.attentive_erasing(
        a, generator=torch.Generator().manual_seed(seed), backend="torch", **kwargs
    )  # type: ignore[arg-type]
    assert torch.equal(again.erased, out) and torch.equal(again.region, region)
    evaluated = lowcam.attentive_erasing(a, training=False, backend="torch", **kwargs)  # type: ignore[arg-type]
    assert evaluated.erased is a and not evaluated.region.any()


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 20), st.integers(1, 20), seeds, st.floats(0.0, 1.0))
def test_erasing_only_where_above_the_threshold(
    batch: int, height: int, width: int, seed: int, factor: float
) -> None:
    a = rand((batch, 1, height, width), seed)
    _, region = lowcam.attentive_erasing(
        a,
        erase_prob=1.0,
        min_factor=factor,
        max_factor=factor,
        min_size=0,
        generator=torch.Generator().manual_seed(seed),
        backend="torch",
    )
    flat = a.flatten(1)
    threshold = flat.amax(1) - (flat.amax(1) - flat.amin(1)) * factor
    assert bool((~region.flatten(1) | (flat > threshold.unsqueeze(1))).all())


@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.integers(2, 3), st.integers(1, 24), st.integers(1, 24), st.integers(1, 4))
def test_generator_activation_in_open_unit_interval(
    batch: int, height: int, width: int, classes: int
) -> None:
    torch.manual_seed(height * 31 + width)
    gen = lowcam.LowLevelActivationGenerator(3, classes, base_width=2)  # train mode: BN normalises the head
    out = gen(torch.randn(batch, 3, height, width) * 5)
    assert out.activation.shape == (batch, 1, height, width)
    assert out.class_maps.shape == (batch, classes, height, width)
    assert out.logits.shape == (batch, classes)
    assert bool(((out.activation > 0) & (out.activation < 1)).all())
