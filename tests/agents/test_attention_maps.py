"""Attention maps: the weights line up with the rendered view, the figure is written, bad runs are refused."""

from __future__ import annotations

import numpy as np
import pytest

from babyaipp.agents.attention_maps import TILE, attention_map, main, plot_attention_map, trap_attention
from babyaipp.agents.training_setup import build_agent, make_vec_env
from babyaipp.errors import ConfigError

ENV = "BabyAIPP/GoToRedBallDense-Easy-TargetPairOnly-v0"


def _untrained(model_name: str, tmp_path_factory=None):
    import tempfile
    from pathlib import Path

    from babyaipp.agents.models import MODELS

    vec = make_vec_env(ENV.replace("TargetPairOnly", "Train"), 1, 0, engine="gym")
    config = MODELS[model_name].config()
    return build_agent(vec, model_name, config, False, 0, "cpu", Path(tempfile.gettempdir()) / "unused-tb")


@pytest.fixture(scope="module")
def amap():
    return attention_map(_untrained("attention"), ENV, seed=1_000_003)


def test_weights_are_a_distribution_per_cell(amap):
    view = amap.weights.shape[0]
    assert amap.weights.shape == (view, view, 4)  # 3 sentence rows + the null slot
    np.testing.assert_allclose(amap.weights.sum(-1), 1.0, atol=1e-5)
    # rows of absent sentences weigh nothing (Easy has two colours, so two sentences)
    assert len(amap.sentences) == 2
    assert np.all(amap.weights[:, :, 2] == 0)


def test_cells_line_up_with_the_rendered_frame(amap):
    """A cell that shows a tile of colour c in the observation is drawn in colour c at [y, x] of the frame."""
    from minigrid.core.constants import COLORS

    ys, xs = np.nonzero(amap.tiles != "")
    assert len(ys) > 0
    for y, x in zip(ys, xs):
        patch = amap.frame[y * TILE + TILE // 4 : (y + 1) * TILE - TILE // 4, x * TILE + TILE // 4]
        tile = COLORS[amap.tiles[y, x]] / 2  # tiles are drawn at half intensity
        highlighted = tile + 0.3 * (255 - tile)  # minigrid tints the visible cells
        assert np.abs(patch.astype(float) - highlighted).sum(-1).min() < 30, (x, y, amap.tiles[y, x])


def test_figure_written(amap, tmp_path):
    path = plot_attention_map(amap, tmp_path / "a.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stats = trap_attention(amap)
    assert stats is None or set(stats) == {"trap_colour_cells", "other_tile_cells"}


def test_model_without_attention_is_refused():
    with pytest.raises(ConfigError, match="--model attention"):
        attention_map(_untrained("image"), ENV, seed=1_000_003)


def test_cli_missing_run_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "--out", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1
