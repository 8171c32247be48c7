"""Keras SGD with weight_decay = wd0/lr0 equals the authors' tfa SGDW; schedules; plateau rule."""
import json

import keras
import numpy as np
import pytest

from training.config import ExperimentConfig
from training.optim import TrainingLossPlateau, learning_rate_schedule, make_optimizer, steps_per_epoch
from training.schema import from_dict


def config_with(**schedule):
    return from_dict(ExperimentConfig, {"optimizer": {"lr": 0.05, "wd": 5e-4},
                                        "training": {"schedule": schedule}})


def numpy_sgdw(theta, gradients, lr_at, wd_at, momentum=0.9, nesterov=True):
    """tfa SGDW: theta -= wd_t * theta, then Keras-2 momentum SGD with lr_t (docs/SPEC.md §7)."""
    theta, velocity = theta.astype(np.float64).copy(), np.zeros_like(theta, dtype=np.float64)
    for step, gradient in enumerate(gradients):
        theta -= wd_at(step) * theta
        velocity = momentum * velocity - lr_at(step) * gradient
        theta += (momentum * velocity - lr_at(step) * gradient) if nesterov else velocity
    return theta


@pytest.mark.parametrize("kind, rate, staircase", [("exp_staircase", 0.96, True), ("exp_continuous", 0.9, False)])
def test_keras_sgd_matches_numpy_sgdw_with_decayed_wd(kind, rate, staircase):
    # A short decay period (2 steps) so that several decays happen within the test.
    config = config_with(kind=kind, decay_epochs=1, steps_per_epoch=2)
    optimizer = make_optimizer(config, steps_per_epoch=999)
    rng = np.random.default_rng(0)
    initial = rng.normal(size=(5, 3)).astype(np.float32)
    gradients = [rng.normal(size=(5, 3)).astype(np.float32) for _ in range(7)]
    variable = keras.Variable(initial)
    for gradient in gradients:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(gradient), variable)])

    def decay(step):
        exponent = step // 2 if staircase else step / 2
        return rate ** exponent

    expected = numpy_sgdw(initial, gradients, lambda t: 0.05 * decay(t), lambda t: 5e-4 * decay(t))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected, rtol=1e-5, atol=1e-6)
    assert optimizer.weight_decay == pytest.approx(0.01)


def test_schedule_periods():
    a = learning_rate_schedule(config_with(kind="exp_staircase"), steps_per_epoch=469)
    assert a.decay_steps == 3900 and a.staircase and a.decay_rate == pytest.approx(0.96)
    b = learning_rate_schedule(config_with(kind="exp_continuous"), steps_per_epoch=469)
    assert b.decay_steps == 4690 and not b.staircase and b.decay_rate == pytest.approx(0.9)
    assert learning_rate_schedule(config_with(kind="plateau"), steps_per_epoch=469) == 0.05
    assert steps_per_epoch(60000, 128) == 469 and steps_per_epoch(50000, 128, repeat=7) == 2735


def test_plateau_follows_the_authors_rule_on_a_hand_computed_sequence():
    plateau = TrainingLossPlateau(patience=4, factor=0.5, reductions=2, cooldown=2, start_epoch=3, min_delta=1e-4)
    # window = previous patience-2 = 2 epochs; wait is never reset.
    losses = [5.0, 4.0, 3.0,  # epochs 0-2: before start_epoch, no checks
              2.0,            # 3: improves on min(4, 3)            -> wait 0
              2.5,            # 4: not below min(3, 2)              -> wait 1
              1.0,            # 5: improves                          -> wait 1
              1.0,            # 6: equal is no improvement           -> wait 2
              1.0,            # 7:                                    -> wait 3
              1.0,            # 8:                                    -> wait 4
              1.0,            # 9: wait 5 > patience -> REDUCE, cooldown 2
              1.0, 1.0,       # 10, 11: cooldown, no checks
              0.5,            # 12: improves on min(1, 1)            -> wait 5
              0.6]            # 13: wait 6 > patience -> REDUCE again (wait never reset) -> finished
    decisions = [plateau.step(epoch, loss) for epoch, loss in enumerate(losses)]
    assert [epoch for epoch, reduce in enumerate(decisions) if reduce] == [9, 13]
    assert plateau.finished and plateau.wait == 6


def test_plateau_callback_scales_only_the_learning_rate_and_stops():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(optimizer=keras.optimizers.SGD(0.3, weight_decay=0.001), loss="mse")
    plateau = TrainingLossPlateau(patience=3, factor=0.2, reductions=1, cooldown=0, start_epoch=0)
    x, y = np.ones((4, 2), "float32"), np.zeros((4, 1), "float32")
    model.fit(x, y, epochs=1, verbose=0)
    plateau.set_model(model)
    for epoch in range(4):
        plateau.on_epoch_end(epoch, {"loss": 1.0})
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.06)
    assert model.optimizer.weight_decay == pytest.approx(0.001) and model.stop_training
    restored = TrainingLossPlateau(patience=3, factor=0.2, reductions=1)
    restored.set_state(plateau.get_state())
    assert restored.get_state() == plateau.get_state()


def test_a_plateau_restored_mid_run_decides_as_the_one_that_ran_on():
    """A resumed run's plateau rule (state from the checkpoint) makes the decisions of an uninterrupted one."""
    losses = [5.0, 4.0, 3.0, 2.0, 2.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.6]

    def fresh():
        return TrainingLossPlateau(patience=4, factor=0.5, reductions=2, cooldown=2, start_epoch=3, min_delta=1e-4)

    through = fresh()
    expected = [through.step(epoch, loss) for epoch, loss in enumerate(losses)]
    for kill_after in (4, 9, 10):
        first = fresh()
        decisions = [first.step(epoch, loss) for epoch, loss in enumerate(losses[:kill_after])]
        resumed = fresh()
        resumed.set_state(json.loads(json.dumps(first.get_state())))   # as the checkpoint's JSON stores it
        decisions += [resumed.step(epoch, loss) for epoch, loss in enumerate(losses) if epoch >= kill_after]
        assert decisions == expected, kill_after
        assert resumed.get_state() == through.get_state()
