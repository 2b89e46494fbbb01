"""The optimised `ours` training step computes the reference step's loss and gradients (ovc bench train_step)."""

import copy

import pytest
import torch

from ovc.bench.train_step import bench_train_step, build_step_inputs, run_step
from ovc.models.device import cpu_bf16_supported, train_autocast


@pytest.fixture(scope="module")
def step_inputs():
    return build_step_inputs(n_videos=4, n_labels=12)


def _first_step(step_inputs, **kw):
    method, feats, labels, targets, cfg = step_inputs
    m = copy.deepcopy(method)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    return run_step(m, opt, feats, labels, targets, cfg, **kw)


def test_exact_part_matches_reference(step_inputs):
    loss_r, grad_r = _first_step(step_inputs, optimised=False)
    loss_o, grad_o = _first_step(step_inputs, optimised=True, cpu_amp=False)  # lean attention, fp32
    assert grad_r.abs().sum() > 0
    assert loss_o == pytest.approx(loss_r, rel=1e-5)
    torch.testing.assert_close(grad_o, grad_r, atol=1e-5, rtol=1e-3)


@pytest.mark.skipif(
    not cpu_bf16_supported(), reason="this CPU has no native bf16 (AVX512-BF16/AMX): train_autocast stays fp32"
)
def test_cpu_bf16_step_within_tolerance(step_inputs):
    loss_r, grad_r = _first_step(step_inputs, optimised=False)
    loss_o, grad_o = _first_step(step_inputs, optimised=True)
    assert loss_o != loss_r  # bf16 really ran
    assert loss_o == pytest.approx(loss_r, rel=1e-2)
    assert float((grad_o - grad_r).norm() / grad_r.norm()) < 0.05
    assert float(torch.nn.functional.cosine_similarity(grad_o, grad_r, dim=0)) > 0.998


def test_train_autocast_policy():
    cpu = torch.device("cpu")
    with train_autocast(cpu, amp=True, cpu_amp=False):
        assert not torch.is_autocast_enabled("cpu")
    with train_autocast(cpu, amp=True, cpu_amp=True):
        assert torch.is_autocast_enabled("cpu") == cpu_bf16_supported()


@pytest.mark.slow
def test_bench_quick_reports_speedup_and_agreement():
    out = bench_train_step(quick=True)
    for key in (
        "speedup",
        "speedup_wall",
        "seconds_per_step_reference",
        "seconds_per_step_optimised",
        "grad_cosine",
        "loss_rel_diff",
    ):
        assert key in out
    assert out["speedup"] > 0 and out["grad_cosine"] > 0.99 and out["loss_rel_diff"] < 1e-2
