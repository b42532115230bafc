"""Tests for lrdist_jax.distributions: named distributions, depth mapping and files."""

import doctest
import json
import math

import numpy as np
import pytest

from lrdist_jax import distributions
from lrdist_jax.distributions import (
    PAPER_COMBINED,
    expand_to_layers,
    flat,
    llrd,
    load_distribution,
    map_distribution,
    paper_combined,
    paper_rounded,
    resolve_distribution,
    save_distribution,
)


def test_named_values():
    assert flat(2e-5, num_slots=4).dtype == np.float32 and np.all(
        flat(2e-5, num_slots=4) == np.float32(2e-5)
    )
    got = llrd(1e-4, decay=0.9, num_slots=10)
    np.testing.assert_allclose(got, [1e-4 * 0.9 ** (9 - s) for s in range(10)], rtol=1e-6)
    assert got[-1] == np.float32(1e-4) and got[0] < got[1]  # head largest, embeddings smallest
    np.testing.assert_allclose(paper_combined(), PAPER_COMBINED, rtol=1e-6)
    np.testing.assert_allclose(paper_combined(scale=2.0), 2 * np.array(PAPER_COMBINED), rtol=1e-6)
    np.testing.assert_allclose(
        paper_rounded(2e-5), 2e-5 * np.array([1, 1, 0.3, 0.7, 1, 1, 1, 1, 1, 3]), rtol=1e-6
    )
    # base_lr does not rescale paper-combined
    a = resolve_distribution("paper-combined", num_slots=10, num_layers=12, base_lr=1.0)
    np.testing.assert_allclose(a, PAPER_COMBINED, rtol=1e-6)


def test_expand_to_layers():
    emb, layers, head = expand_to_layers(paper_rounded(1.0), 12)
    assert (emb, head) == (1.0, 3.0)
    np.testing.assert_allclose(layers, [1, 1, 0.3, 0.7, 0.7, 1, 1, 1, 1, 1, 1, 1], rtol=1e-6)


def test_mapping_identity_and_coarsening():
    src = paper_combined()
    same = map_distribution(src, num_layers=12, num_slots_target=10, num_layers_target=12)
    np.testing.assert_allclose(same, src, rtol=1e-6)
    # 12 layers, 10 slots -> 12 layers, 4 slots: geometric mean over layers 0-5 and 6-11
    _, layers, _ = expand_to_layers(src, 12)
    four = map_distribution(src, num_layers=12, num_slots_target=4, num_layers_target=12)
    want = [src[0], math.exp(np.log(layers[:6]).mean()), math.exp(np.log(layers[6:]).mean()),
            src[9]]  # fmt: skip
    np.testing.assert_allclose(four, want, rtol=1e-6)
    one = map_distribution(src, num_layers=12, num_slots_target=1, num_layers_target=12)
    want_one = math.exp(np.mean(np.log([src[0], *layers, src[9]])))
    np.testing.assert_allclose(one, [want_one], rtol=1e-6)


def test_mapping_to_minilm_depth():
    src = np.arange(1, 11, dtype=np.float64) * 1e-6  # distinct per slot
    out = map_distribution(src, num_layers=12, num_slots_target=8, num_layers_target=6)
    # target layer j -> source layer floor((j + 0.5) * 2) = 1, 3, 5, 7, 9, 11
    # source slots of those layers: 1, 3, 4, 5, 7, 8
    np.testing.assert_allclose(out, np.array([1, 2, 4, 5, 6, 8, 9, 10]) * 1e-6, rtol=1e-6)
    up = map_distribution(out, num_layers=6, num_slots_target=14, num_layers_target=12)
    assert up[0] == out[0] and up[-1] == out[-1] and len(up) == 14
    np.testing.assert_allclose(up[1:-1], np.repeat(out[1:-1], 2), rtol=1e-6)


def test_resolve_maps_named_onto_other_layouts():
    got = resolve_distribution("paper-rounded", num_slots=8, num_layers=6, base_lr=1e-5)
    want = map_distribution(paper_rounded(1e-5), num_layers=12, num_slots_target=8,
                            num_layers_target=6)  # fmt: skip
    np.testing.assert_allclose(got, want)
    assert resolve_distribution("flat", num_slots=5, num_layers=6, base_lr=3e-5).shape == (5,)
    with pytest.raises(ValueError, match="unknown distribution 'nope'.*flat, llrd"):
        resolve_distribution("nope", num_slots=10, num_layers=12)
    with pytest.raises(ValueError, match="maximum valid num_slots"):
        resolve_distribution("flat", num_slots=20, num_layers=12)


def test_file_round_trip_and_resolve(tmp_path):
    path = save_distribution(tmp_path / "d.json", paper_combined(), num_layers=12, source="test")
    rec = json.loads(path.read_text())
    assert rec["format"] == "lrdist-jax/distribution" and rec["version"] == 1
    assert rec["slots"][0] == "embeddings" and rec["slots"][-1] == "head/other"
    dist = load_distribution(path)
    np.testing.assert_allclose(dist.lrs, PAPER_COMBINED, rtol=1e-6)
    assert (dist.num_layers, dist.source, len(dist.slots)) == (12, "test", 10)
    mapped = resolve_distribution(str(path), num_slots=5, num_layers=6)
    want = map_distribution(PAPER_COMBINED, num_layers=12, num_slots_target=5,
                            num_layers_target=6)  # fmt: skip
    np.testing.assert_allclose(mapped, want, rtol=1e-6)


@pytest.mark.parametrize(
    "content, problem",
    [
        ("not json", "not a JSON"),
        ('{"format": "other", "version": 1, "lrs": [1e-5], "num_layers": 12}', "'format'"),
        ('{"format": "lrdist-jax/distribution", "version": 2, "lrs": [1], "num_layers": 1}',
         "version"),
        ('{"format": "lrdist-jax/distribution", "version": 1, "num_layers": 12}', "'lrs'"),
        ('{"format": "lrdist-jax/distribution", "version": 1, "lrs": [1e-5, 1e-5, 1e-5]}',
         "'num_layers'"),
        ('{"format": "lrdist-jax/distribution", "version": 1, "lrs": [1e-5, 0, 1e-5], '
         '"num_layers": 1}', "positive"),
        ('{"format": "lrdist-jax/distribution", "version": 1, "lrs": [1e-5, NaN, 1e-5], '
         '"num_layers": 1}', "finite"),
        ('{"format": "lrdist-jax/distribution", "version": 1, "lrs": [1e-5, 1e-5], '
         '"num_layers": 12}', "do not fit"),
    ],
)  # fmt: skip
def test_bad_files_name_the_file_and_the_problem(tmp_path, content, problem):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError) as e:
        load_distribution(path)
    assert str(path) in str(e.value) and problem in str(e.value)


def test_doctests():
    assert doctest.testmod(distributions).failed == 0


def test_cli_plot_distribution_writes_png(tmp_path, capsys):
    from lrdist_jax.cli import main

    src = save_distribution(tmp_path / "d.json", paper_combined(), num_layers=12, source="paper")
    png = tmp_path / "d.png"
    assert main(["plot-distribution", str(src), "--out", str(png)]) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    png6 = tmp_path / "d6.png"
    assert main(["plot-distribution", str(src), "--out", str(png6), "--num-layers", "6"]) == 0
    assert png6.read_bytes()[:4] == b"\x89PNG"
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "lrdist-jax/distribution", "version": 1, "lrs": [-1]}')
    assert main(["plot-distribution", str(bad), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "num_layers" in err
    assert not (tmp_path / "x.png").exists()


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch, capsys):
    import sys

    from lrdist_jax.cli import main

    src = save_distribution(tmp_path / "d.json", flat(1e-5), num_layers=12)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert main(["plot-distribution", str(src), "--out", str(tmp_path / "d.png")]) == 2
    assert "pip install 'lrdist-jax[plots]'" in capsys.readouterr().err
