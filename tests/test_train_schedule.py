"""Learning-rate schedules: closed forms and PyTorch's CosineAnnealingLR / MultiStepLR."""

import math

import pytest

from numharden.errors import ConfigError
from numharden.train import Constant, Cosine, Step, Warmup, make_schedule

# torch.optim.lr_scheduler.CosineAnnealingLR(T_max=10, eta_min=0.1), base lr 1, lr before
# each of the first 11 steps
TORCH_COSINE = [1.0, 0.977975432333, 0.914057647469, 0.814503363532, 0.689057647469, 0.55,
                0.410942352531, 0.285496636468, 0.185942352531, 0.122024567667, 0.1]


def test_cosine_matches_torch():
    c = Cosine(10, eta_min_factor=0.1)
    assert [c(t) for t in range(11)] == pytest.approx(TORCH_COSINE, abs=1e-11)
    assert c(50) == pytest.approx(0.1)  # stays at eta_min after the end


def test_step_is_multistep():
    s = Step([3, 5], gamma=0.5)
    assert [s(t) for t in range(7)] == [1, 1, 1, 0.5, 0.5, 0.25, 0.25]
    assert Constant()(123) == 1.0


def test_warmup_ramps_linearly_into_the_following_schedule():
    w = Warmup(4, Cosine(8))
    assert [w(t) for t in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert w(4) == 1.0 and w(8) == pytest.approx(0.5) and w(12) == pytest.approx(0.0, abs=1e-15)
    assert w.describe() == {"name": "warmup", "steps": 4,
                            "after": {"name": "cosine", "total": 8, "eta_min_factor": 0.0}}


def test_make_schedule_converts_epochs_to_iterations():
    s = make_schedule({"name": "cosine", "eta_min_factor": 0.01}, epochs=3, steps_per_epoch=10)
    assert isinstance(s, Cosine) and s.total == 30
    assert s(15) == pytest.approx(0.01 + 0.99 * 0.5)
    s = make_schedule({"name": "step", "milestones": [1, 2], "gamma": 0.1}, epochs=3,
                      steps_per_epoch=10)
    assert (s(9), s(10), s(19), s(20)) == pytest.approx((1, 0.1, 0.1, 0.01))
    # warm-up of half an epoch, then cosine over the remaining 25 iterations
    s = make_schedule({"name": "cosine", "warmup_epochs": 0.5}, epochs=3, steps_per_epoch=10)
    assert s(0) == pytest.approx(0.2) and s(4) == 1.0
    assert s(5 + 25) == pytest.approx(0.0, abs=1e-15)
    assert s(5 + 10) == pytest.approx((1 + math.cos(math.pi * 10 / 25)) / 2)
    # milestones stay at absolute epochs under warm-up
    s = make_schedule({"name": "step", "milestones": [2], "warmup_epochs": 1}, epochs=3,
                      steps_per_epoch=10)
    assert (s(19), s(20)) == pytest.approx((1.0, 0.1))
    # defaults: step at 50 % and 75 % of the run
    s = make_schedule("step", epochs=4, steps_per_epoch=1)
    assert [s(t) for t in range(4)] == pytest.approx([1, 1, 0.1, 0.01])
    assert isinstance(make_schedule(None, epochs=1, steps_per_epoch=1), Constant)


@pytest.mark.parametrize("spec, match", [
    ("linear", "unknown schedule"),
    ({"name": "cosine", "gamma": 0.1}, "unknown option"),
    ({"name": "cosine", "warmup_epochs": 5}, "warmup_epochs"),
    ({"name": "step", "milestones": [3, 1]}, "increasing"),
    ({"name": "step", "milestones": 3}, "list of epochs"),
    ({"name": "step", "gamma": 0.0}, "gamma"),
    ({"name": "cosine", "eta_min_factor": 2.0}, "eta_min_factor"),
])
def test_bad_specs(spec, match):
    with pytest.raises(ConfigError, match=match):
        make_schedule(spec, epochs=4, steps_per_epoch=10)
