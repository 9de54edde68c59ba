"""`glassgem bench`: report and JSON fields, FLOP counting convention, bad options."""

import json

import pytest
import torch

from glassgem.cli import main
from glassgem.inference.bench import count_flops, matmul_gflops


class _Matmul(torch.nn.Module):
    """A 'model' whose semantic_scores is one known matmul: [B, 32, 48] @ [48, 16]."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(48, 16))

    def semantic_scores(self, x: torch.Tensor, graph: bool = True) -> torch.Tensor:
        return x @ self.w


def test_flops_are_two_per_multiply_accumulate():
    assert count_flops(_Matmul(), torch.randn(3, 32, 48)) == 2 * 3 * 32 * 48 * 16


def test_matmul_yardstick_is_positive_and_sized_to_the_time_budget():
    gflops, n = matmul_gflops("fp32", n=512, runs=2)
    assert gflops > 0 and n == 512
    _, n_small = matmul_gflops("fp32", n=2048, runs=1, max_seconds=1e-9)  # too slow for any n: smallest
    assert n_small == 256


def test_bench_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "--model",
            "debug",
            "--size",
            "128",
            "--threads",
            "1",
            "--runs",
            "3",
            "--batch",
            "2",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "median" in printed and "p90" in printed and "GFLOP" in printed
    r = json.loads(out.read_text())
    assert r["model"] == "debug" and r["batch"] == 2 and r["runs"] == 3 and r["threads"] == 1
    assert 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"]
    assert r["gflops"] > 0
    assert abs(r["achieved_gflops_per_s"] - r["gflops"] / (r["median_ms"] / 1000)) < 1e-6 * r["achieved_gflops_per_s"]
    assert abs(r["fraction_of_matmul_fp32"] - r["achieved_gflops_per_s"] / r["matmul_fp32_gflops_per_s"]) < 1e-9


def test_bench_rejects_bad_sizes(capsys):
    assert main(["bench", "--model", "debug", "--size", "100", "--runs", "1"]) == 2
    assert "multiple of 32" in capsys.readouterr().err


def test_inference_commands_flush_denormals_only_while_they_run():
    import torch

    from glassgem.cli.common import INFERENCE_COMMANDS
    from glassgem.inference.runtime import flush_denormals

    tiny = torch.tensor([1e-39], dtype=torch.float32)  # a denormal
    assert (tiny * 1.0).item() != 0.0
    with flush_denormals(True):
        assert (tiny * 1.0).item() == 0.0
    assert (tiny * 1.0).item() != 0.0  # restored: training and user code keep IEEE behaviour
    with flush_denormals(False):
        assert (tiny * 1.0).item() != 0.0
    assert {"predict", "evaluate", "bench"} <= INFERENCE_COMMANDS and "train" not in INFERENCE_COMMANDS


@pytest.mark.slow
def test_bench_times_the_graph_for_gem_lite_unless_eager(tmp_path):
    results = {}
    for flag in ([], ["--eager"]):
        out = tmp_path / f"bench{len(flag)}.json"
        assert (
            main(
                [
                    "bench",
                    "--model",
                    "gem-lite",
                    "--size",
                    "128",
                    "--threads",
                    "1",
                    "--runs",
                    "1",
                    "--json",
                    str(out),
                    *flag,
                ]
            )
            == 0
        )
        results[bool(flag)] = json.loads(out.read_text())
    assert results[False]["graph"] is True and results[True]["graph"] is False
    assert results[False]["gflops"] == results[True]["gflops"] > 0  # FLOPs counted on the eager model either way
