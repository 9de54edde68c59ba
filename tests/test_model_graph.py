"""TorchScript graphs of GEM.semantic_scores (inference/graphs.py): same scores as eager, used only where safe:
plain CPU inference of a model fused for inference (its weights no longer change)."""

import warnings

import numpy as np
import pytest
import torch

from glassgem import GEM, Predictor
from glassgem.inference.graphs import ScoreGraphs
from glassgem.inference.protocol import squash
from glassgem.inference.runtime import fuse_for_inference
from glassgem.inference.scorers import ModelScorer


def _debug(max_graphs=4, after_seconds=0.0):
    torch.manual_seed(0)
    model = GEM.from_config("debug").eval()
    return model, ScoreGraphs(model, max_graphs=max_graphs, after_seconds=after_seconds)


@pytest.mark.slow
def test_shipped_model_graph_gives_the_eager_scores_on_a_real_photo():
    from skimage import data

    predictor = Predictor("gem-lite", device="cpu")  # GEM-Lite, loaded and fused: graphs on by default
    graphs = predictor.scorer.graphs
    graphs.after_seconds = 0.0
    x = squash(np.asarray(data.coffee()), 384)[None]
    with torch.no_grad():
        eager = predictor.scorer.model.semantic_scores(x)
        scored = predictor.scorer(x)
    assert graphs.failed is None
    assert list(graphs.graphs) == [((1, 3, 384, 384), x.dtype, torch.get_num_threads(), 0.0625)]
    assert scored.shape == eager.shape == (1, 2, 384, 384)
    assert (scored - eager).abs().max().item() < 1e-3
    # the same decision wherever eager is not a near-tie (the smoothed map has a few pixels within 1e-5)
    decided = (eager[:, 1] - eager[:, 0]).abs() > 1e-4
    assert decided.float().mean().item() > 0.999
    assert torch.equal(scored.argmax(1)[decided], eager.argmax(1)[decided])


@pytest.mark.slow
def test_graph_is_built_per_shape_and_only_for_plain_cpu_inference():
    model, graphs = _debug(max_graphs=2)
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.enable_grad():
        graphs(x)  # autograd on: eager
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        graphs(x)  # autocast: eager
    model.train()
    with torch.no_grad():
        graphs(x)  # training mode: eager
    model.eval()
    assert not graphs.graphs
    with torch.no_grad():
        first = graphs(x)
        again = graphs(x)
        assert len(graphs.graphs) == 1
        torch.testing.assert_close(first, model.semantic_scores(x), atol=1e-4, rtol=0)
        assert torch.equal(first, again)
        graphs(torch.rand(2, 3, 128, 128) * 255)
        graphs(torch.rand(1, 3, 160, 160) * 255)
    shapes = [key[0] for key in graphs.graphs]
    assert shapes == [(2, 3, 128, 128), (1, 3, 160, 160)]  # the oldest shape was dropped


@pytest.mark.slow
def test_a_shape_is_traced_only_after_enough_eager_time():
    model, graphs = _debug(after_seconds=3600.0)
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad():
        for _ in range(3):
            graphs(x)
        key = (tuple(x.shape), x.dtype, torch.get_num_threads(), model.cfg.score_smoothing)
        assert not graphs.graphs and 0 < graphs.eager_seconds[key]
        graphs.after_seconds = 1e-9  # already spent: the next call traces
        graphs(x)
    assert len(graphs.graphs) == 1 and not graphs.eager_seconds
    lite = ModelScorer(fuse_for_inference(GEM.from_config("gem-lite")))
    assert lite.graphs is not None and lite.graphs.after_seconds > 1  # the CLI default waits


@pytest.mark.parametrize("preset,graphs", [("debug", False), ("gem-lite", True)])
def test_graphs_default_to_the_encoders_preference_for_fused_models_only(preset, graphs):
    assert (ModelScorer(GEM.from_config(preset).fuse_for_inference()).graphs is not None) == graphs
    assert ModelScorer(GEM.from_config(preset).eval()).graphs is None  # weights that may still change: eager


def test_a_predictor_of_a_users_model_follows_its_weights():
    """A model the user keeps (and may train or reload) runs eagerly: new weights give new masks at once."""
    torch.manual_seed(0)
    model = GEM.from_config("debug").eval()
    predictor = Predictor(model, size=128)
    photo = (np.random.default_rng(0).random((96, 112, 3)) * 255).astype(np.uint8)
    before = predictor.probabilities(photo)
    torch.manual_seed(1)
    other = GEM.from_config("debug").eval()
    model.load_checked(other.state_dict(), "other.safetensors")
    after = predictor.probabilities(photo)
    assert np.abs(before - after).max() > 1e-3
    np.testing.assert_allclose(after, Predictor(other, size=128).probabilities(photo), atol=1e-6)


def test_a_tracing_failure_warns_once_and_runs_eagerly(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no TorchScript here")

    monkeypatch.setattr(torch.jit, "trace", broken)
    model, graphs = _debug()
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad():
        with pytest.warns(UserWarning, match="no TorchScript here"):
            scored = graphs(x)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again = graphs(x)
        eager = model.semantic_scores(x)
    assert torch.equal(scored, eager) and torch.equal(again, eager)
    assert "no TorchScript here" in graphs.failed
