"""TorchScript graphs of GEM.semantic_scores (inference/graphs.py): same scores as eager, used only where safe."""

import warnings

import numpy as np
import pytest
import torch

from glassgem import GEM
from glassgem.inference.protocol import squash


def _debug(max_graphs=4, after_seconds=0.0):
    torch.manual_seed(0)
    model = GEM.from_config("debug").fuse_for_inference(graphs=True)
    model._graphs.max_graphs, model._graphs.after_seconds = max_graphs, after_seconds
    return model


@pytest.mark.slow
def test_shipped_model_graph_gives_the_eager_scores_on_a_real_photo():
    from skimage import data

    model = GEM.from_pretrained("gem-lite").fuse_for_inference()  # GEM-Lite: graphs on by default
    model._graphs.after_seconds = 0.0
    x = squash(np.asarray(data.coffee()), 384)[None]
    with torch.no_grad():
        eager = model.semantic_scores(x, graph=False)
        scored = model.semantic_scores(x)
    assert model._graphs is not None and model._graphs.failed is None
    assert list(model._graphs.graphs) == [((1, 3, 384, 384), x.dtype, torch.get_num_threads(), 0.0625)]
    assert scored.shape == eager.shape == (1, 2, 384, 384)
    assert (scored - eager).abs().max().item() < 1e-3
    # the same decision wherever eager is not a near-tie (the smoothed map has a few pixels within 1e-5)
    decided = (eager[:, 1] - eager[:, 0]).abs() > 1e-4
    assert decided.float().mean().item() > 0.999
    assert torch.equal(scored.argmax(1)[decided], eager.argmax(1)[decided])


@pytest.mark.slow
def test_graph_is_built_per_shape_and_only_for_plain_cpu_inference():
    model = _debug(max_graphs=2)
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.enable_grad():
        model.semantic_scores(x)  # autograd on: eager
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model.semantic_scores(x)  # autocast: eager
    assert not model._graphs.graphs
    with torch.no_grad():
        first = model.semantic_scores(x)
        again = model.semantic_scores(x)
        assert len(model._graphs.graphs) == 1
        torch.testing.assert_close(first, model.semantic_scores(x, graph=False), atol=1e-4, rtol=0)
        assert torch.equal(first, again)
        model.semantic_scores(torch.rand(2, 3, 128, 128) * 255)
        model.semantic_scores(torch.rand(1, 3, 160, 160) * 255)
    shapes = [key[0] for key in model._graphs.graphs]
    assert shapes == [(2, 3, 128, 128), (1, 3, 160, 160)]  # the oldest shape was dropped


@pytest.mark.slow
def test_a_shape_is_traced_only_after_enough_eager_time():
    model = _debug(after_seconds=3600.0)
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad():
        for _ in range(3):
            model.semantic_scores(x)
        key = (tuple(x.shape), x.dtype, torch.get_num_threads(), model.cfg.score_smoothing)
        assert not model._graphs.graphs and 0 < model._graphs.eager_seconds[key]
        model._graphs.after_seconds = 1e-9  # already spent: the next call traces
        model.semantic_scores(x)
    assert len(model._graphs.graphs) == 1 and not model._graphs.eager_seconds
    assert GEM.from_config("gem-lite").fuse_for_inference()._graphs.after_seconds > 1  # the CLI default waits


@pytest.mark.parametrize("preset,graphs", [("debug", False), ("gem-lite", True)])
def test_graphs_default_to_the_encoders_preference(preset, graphs):
    assert (GEM.from_config(preset).fuse_for_inference()._graphs is not None) == graphs


def test_graphs_go_when_training():
    model = _debug()
    with torch.no_grad():
        model.semantic_scores(torch.rand(1, 3, 128, 128) * 255)
    model.train()
    assert model._graphs is None
    model.eval()
    with torch.no_grad():  # eager again, with the weights as they are now
        model.semantic_scores(torch.rand(1, 3, 128, 128) * 255)


@pytest.mark.slow
def test_loading_weights_drops_graphs_traced_with_the_old_ones():
    model = _debug()
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad():
        before = model.semantic_scores(x)
    torch.manual_seed(1)
    other = GEM.from_config("debug").state_dict()
    model.load_checked(other, "other.safetensors")
    with torch.no_grad():
        after = model.semantic_scores(x)
        eager = model.semantic_scores(x, graph=False)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, eager, atol=1e-4, rtol=0)


def test_a_tracing_failure_warns_once_and_runs_eagerly(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no TorchScript here")

    monkeypatch.setattr(torch.jit, "trace", broken)
    model = _debug()
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad():
        with pytest.warns(UserWarning, match="no TorchScript here"):
            scored = model.semantic_scores(x)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again = model.semantic_scores(x)
        eager = model.semantic_scores(x, graph=False)
    assert torch.equal(scored, eager) and torch.equal(again, eager)
    assert "no TorchScript here" in model._graphs.failed
