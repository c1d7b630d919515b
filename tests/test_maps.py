"""lowcam.maps: class maps of a CAM head, the map of a class, normalisation to [0, 1]."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import lowcam
from lowcam.metrics import prepare_scoremap


def test_cam_class_maps_average_to_the_classifier_logits() -> None:
    g = torch.Generator().manual_seed(0)
    features = torch.rand(3, 6, 5, 4, generator=g, dtype=torch.float64)
    fc = torch.nn.Linear(6, 7).double()
    cams = lowcam.cam_class_maps(features, fc.weight, fc.bias)
    assert cams.shape == (3, 7, 5, 4)
    torch.testing.assert_close(cams.mean(dim=(2, 3)), fc(features.mean(dim=(2, 3))))
    # A plain loop over classes and channels, without the bias (CAM's convention).
    loop = torch.stack([sum(fc.weight[c, k] * features[:, k] for k in range(6)) for c in range(7)], dim=1)
    torch.testing.assert_close(lowcam.cam_class_maps(features, fc.weight), loop)


def test_select_class_map_picks_each_samples_class_and_passes_gradients(device: str) -> None:
    maps = torch.randn(4, 5, 3, 2, device=device, requires_grad=True)
    classes = torch.tensor([4, 0, 2, 2], device=device)
    picked = lowcam.select_class_map(maps, classes)
    assert picked.shape == (4, 1, 3, 2)
    for b in range(4):
        assert torch.equal(picked[b, 0], maps[b, int(classes[b])])
    picked.sum().backward()
    assert maps.grad is not None
    assert torch.equal(
        maps.grad.flatten(2).amax(2) > 0, torch.nn.functional.one_hot(classes.cpu(), 5).bool().to(device)
    )


def test_minmax_matches_the_wsoleval_score_map_normalisation() -> None:
    g = torch.Generator().manual_seed(1)
    cams = torch.randn(6, 1, 224, 224, generator=g, dtype=torch.float64) * 5 - 2
    cams[2] = 3.0  # constant: zeros in both
    cams[4, 0, 0, 0] = float("nan")  # NaN: zeros in both
    # prepare_scoremap resizes first; at 224 x 224 the bicubic resize is the identity.
    torch.testing.assert_close(lowcam.normalize_map(cams)[:, 0], prepare_scoremap(cams, size=224))


def test_normalize_map_against_a_plain_loop() -> None:
    g = torch.Generator().manual_seed(2)
    maps = torch.randn(3, 2, 4, 5, generator=g)
    maps[1, 1] = -torch.rand(4, 5, generator=g)  # no positive value: zeros for "peak"
    minmax = lowcam.normalize_map(maps, "minmax")
    peak = lowcam.normalize_map(maps, "peak")
    for b in range(3):
        for c in range(2):
            m = maps[b, c]
            torch.testing.assert_close(minmax[b, c], (m - m.min()) / (m.max() - m.min()))
            expected = m.clamp_min(0) / m.max() if m.max() > 0 else torch.zeros_like(m)
            torch.testing.assert_close(peak[b, c], expected)
    for out in (minmax, peak):
        assert out.dtype == maps.dtype and bool(((out >= 0) & (out <= 1)).all())


@pytest.mark.parametrize("method", ["minmax", "peak"])
def test_normalized_cams_are_valid_loss_inputs(method: str) -> None:
    # Raw CAMs give the entropy loss NaN and the area loss no lower bound; normalised ones are fine.
    cams = (torch.randn(2, 4, 7, 7) * 3).requires_grad_()
    p = lowcam.select_class_map(lowcam.normalize_map(cams, method), torch.tensor([1, 3]))  # type: ignore[arg-type]
    loss = lowcam.weighted_entropy_loss(p) + lowcam.area_loss(
        p, lowcam.normalize_map(cams), torch.randn(2, 4), topk=3, skip=1
    )
    loss.backward()
    assert bool(torch.isfinite(loss)) and cams.grad is not None and bool(torch.isfinite(cams.grad).all())
    raw = lowcam.select_class_map(cams.detach(), torch.tensor([1, 3]))
    assert bool(torch.isnan(lowcam.weighted_entropy_loss(raw)))


def test_compile_fullgraph() -> None:
    torch._dynamo.reset()
    fn = torch.compile(
        lambda f, w, y: lowcam.select_class_map(lowcam.normalize_map(lowcam.cam_class_maps(f, w)), y),
        fullgraph=True,
    )
    f, w, y = torch.rand(2, 3, 4, 4), torch.randn(5, 3), torch.tensor([0, 4])
    eager = lowcam.select_class_map(lowcam.normalize_map(lowcam.cam_class_maps(f, w)), y)
    torch.testing.assert_close(fn(f, w, y), eager)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: lowcam.cam_class_maps(torch.rand(2, 3, 4), torch.rand(5, 3)),
            ValueError,
            r"features must have shape \(B, K, H, W\)",
        ),
        (
            lambda: lowcam.cam_class_maps(torch.rand(2, 3, 4, 4), torch.rand(5, 4)),
            ValueError,
            "expected K=3 input features, got 4",
        ),
        (
            lambda: lowcam.cam_class_maps(torch.rand(2, 3, 4, 4), torch.rand(5, 3), torch.rand(4)),
            ValueError,
            r"bias must have shape \(C,\) = \(5,\), got shape \(4,\)",
        ),
        (
            lambda: lowcam.select_class_map(torch.rand(2, 3, 4, 4), torch.tensor([0.0, 1.0])),
            TypeError,
            "classes must be an integer tensor, got torch.float32",
        ),
        (
            lambda: lowcam.select_class_map(torch.rand(2, 3, 4, 4), torch.tensor([0, 1, 2])),
            ValueError,
            r"classes must have shape \(B,\) = \(2,\)",
        ),
        (
            lambda: lowcam.normalize_map(torch.rand(2, 4, 4)),
            ValueError,
            r"maps must have shape \(B, C, H, W\), got shape \(2, 4, 4\)",
        ),
        (
            lambda: lowcam.normalize_map(torch.rand(2, 1, 4, 4), "max"),
            ValueError,
            r"method must be one of \('minmax', 'peak'\), got 'max'",
        ),
        (
            lambda: lowcam.normalize_map(torch.ones(2, 1, 4, 4, dtype=torch.long)),
            TypeError,
            "maps must have a floating dtype",
        ),
    ],
)
def test_bad_input(call: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()  # type: ignore[operator]


def test_the_docs_page_example_runs() -> None:
    page = Path(__file__).resolve().parent.parent / "docs" / "components" / "maps.md"
    if not page.is_file():
        pytest.skip("docs/ is not shipped in the sdist")
    block, *others = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    for other in others:  # e.g. the extractor's example: each block runs on its own
        exec(compile(other, str(page), "exec"), {})
    namespace: dict[str, object] = {}
    exec(compile(block, str(page), "exec"), namespace)
    loss, features = namespace["loss"], namespace["features"]
    assert isinstance(loss, torch.Tensor) and bool(torch.isfinite(loss))
    assert isinstance(features, torch.Tensor) and features.grad is not None


def test_cam_class_maps_returns_the_promoted_dtype() -> None:
    # before: the features' dtype (bf16 features with a float32 head gave bf16 maps), against the docstring
    features = torch.rand(2, 4, 3, 3)
    weight = torch.rand(5, 4)
    assert lowcam.cam_class_maps(features.bfloat16(), weight).dtype == torch.float32
    assert lowcam.cam_class_maps(features, weight.double()).dtype == torch.float64
    assert lowcam.cam_class_maps(features.double(), weight).dtype == torch.float64
    exact = lowcam.cam_class_maps(features.double(), weight.double())
    assert torch.allclose(lowcam.cam_class_maps(features, weight.double()), exact)
