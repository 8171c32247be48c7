"""Optimizer, the two exponential LR schedules, the authors' plateau rule (docs/SPEC.md §5.4, §7) and
edge-popup's per-epoch cosine schedule (Ramanujan et al. 2020, for the top-k mask configs).

The authors' tfa SGDW decays weights by ``wd_t * var`` per step, with wd_t on the same
schedule as lr_t. Keras 3 SGD decays by ``weight_decay * lr_t * var``, so
``weight_decay = wd0 / lr0`` reproduces SGDW exactly, and a plateau reduction only
needs to scale the learning rate.
"""
import math

import keras

STAIRCASE_STEPS_PER_EPOCH = 390  # hard-coded in the authors' old trainer, also for MNIST (SPEC B17)


def learning_rate_schedule(config, steps_per_epoch):
    """lr0 as a float (constant / plateau), an ExponentialDecay of schedule A or B, or EpochCosineDecay."""
    schedule, lr0 = config.training.schedule, config.optimizer.lr
    if schedule.kind == "exp_staircase":
        period = (schedule.steps_per_epoch or STAIRCASE_STEPS_PER_EPOCH) * schedule.decay_epochs
        rate = 0.96 if schedule.decay_rate is None else schedule.decay_rate
        return keras.optimizers.schedules.ExponentialDecay(lr0, period, rate, staircase=True)
    if schedule.kind == "exp_continuous":
        period = (schedule.steps_per_epoch or steps_per_epoch) * schedule.decay_epochs
        rate = 0.9 if schedule.decay_rate is None else schedule.decay_rate
        return keras.optimizers.schedules.ExponentialDecay(lr0, period, rate, staircase=False)
    if schedule.kind == "cosine":
        return EpochCosineDecay(lr0, steps_per_epoch, config.training.epochs)
    return lr0


@keras.saving.register_keras_serializable(package="signed_supermask")
class EpochCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """lr0 * (1 + cos(pi * epoch / epochs)) / 2, constant within an epoch, no warm-up.

    As edge-popup's ``cosine_lr`` (hidden-networks utils/schedulers.py), which sets the rate at
    the start of each epoch; the epoch is ``step // steps_per_epoch``."""

    def __init__(self, initial_learning_rate, steps_per_epoch, epochs):
        self.initial_learning_rate = float(initial_learning_rate)
        self.steps_per_epoch = int(steps_per_epoch)
        self.epochs = int(epochs)

    def __call__(self, step):
        ops = keras.ops
        epoch = ops.floor_divide(ops.cast(step, "int32"), self.steps_per_epoch)
        phase = ops.cast(epoch, "float32") * (math.pi / self.epochs)
        return self.initial_learning_rate * 0.5 * (1.0 + ops.cos(phase))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "steps_per_epoch": self.steps_per_epoch,
                "epochs": self.epochs}


def make_optimizer(config, steps_per_epoch):
    """Keras SGD equivalent to the authors' SGDW(lr, wd, momentum, nesterov)."""
    optimizer = config.optimizer
    return keras.optimizers.SGD(
        learning_rate=learning_rate_schedule(config, steps_per_epoch),
        momentum=optimizer.momentum, nesterov=optimizer.nesterov,
        weight_decay=(optimizer.wd / optimizer.lr) if optimizer.wd > 0 else None)


# Below this initial learning rate a non-finite loss is not the step size's doing.
SMALL_LEARNING_RATE = 1e-4


def divergence_hint(optimizer, signed=True):
    """What to try after a non-finite training loss (``optimizer``: the config's optimizer section):
    a lower learning rate, unless it is already tiny; for a baseline (trained weights) also smaller initial
    weights, which made the Conv6/Conv8 baselines train at the authors' lr (docs/cifar_runs.md)."""
    if optimizer.lr > SMALL_LEARNING_RATE:
        if signed:
            return "lower optimizer.lr?"
        return ("lower optimizer.lr, or smaller initial weights, e.g. --set init.weight.factor=0.3333333 (a third "
                "of the variance: the Conv baselines' U(+-sqrt(1.5/fan_in)) of configs/conv6_baseline_sqrt2.yaml); "
                "docs/cifar_runs.md#baseline-checks-before-the-long-runs")
    return (f"optimizer.lr {optimizer.lr:g} is already tiny: check the data, the init files and "
            f"optimizer.wd ({optimizer.wd:g})")


def current_learning_rate(optimizer):
    """The learning rate the next step will use, as a float."""
    rate = optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(rate))


class TrainingLossPlateau(keras.callbacks.Callback):
    """The authors' reduce-on-plateau on the *training* loss (SPEC §5.4 C), quirks included.

    From epoch ``start_epoch`` on: during a cooldown only count it down; otherwise
    compare this epoch's loss with the minimum over the previous ``patience - 2``
    epochs. No improvement of at least ``min_delta`` increments ``wait``, which is
    never reset; once ``wait > patience`` the learning rate is multiplied by
    ``factor``, a cooldown starts, and after ``reductions`` reductions training stops: the
    callback sets ``model.stop_training``, the one stop signal the run loop and its checkpoint use.
    """

    def __init__(self, patience=15, factor=0.2, reductions=5, cooldown=10, start_epoch=10, min_delta=1e-4):
        super().__init__()
        self.patience, self.factor, self.reductions = patience, factor, reductions
        self.cooldown, self.start_epoch, self.min_delta = cooldown, start_epoch, min_delta
        self.loss_history, self.wait, self.cooldown_left, self.reductions_done = [], 0, 0, 0

    @property
    def finished(self):
        return self.reductions_done >= self.reductions

    def step(self, epoch, train_loss):
        """Feed one epoch's training loss; returns True when the lr must be reduced."""
        self.loss_history.append(float(train_loss))
        if epoch < self.start_epoch or self.finished:
            return False
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            return False
        window = self.loss_history[-self.patience + 1:-1]
        if window and self.loss_history[-1] + self.min_delta < min(window):
            return False
        self.wait += 1
        if self.wait <= self.patience:
            return False
        self.cooldown_left = self.cooldown
        self.reductions_done += 1
        return True

    def on_epoch_end(self, epoch, logs=None):
        if self.step(epoch, (logs or {})["loss"]):
            rate = self.model.optimizer.learning_rate
            rate.assign(float(keras.ops.convert_to_numpy(rate)) * self.factor)
        if self.finished:
            self.model.stop_training = True

    def get_state(self):
        return {"loss_history": self.loss_history, "wait": self.wait, "cooldown_left": self.cooldown_left,
                "reductions_done": self.reductions_done}

    def set_state(self, state):
        self.loss_history = [float(v) for v in state["loss_history"]]
        self.wait, self.cooldown_left = int(state["wait"]), int(state["cooldown_left"])
        self.reductions_done = int(state["reductions_done"])


def steps_per_epoch(num_examples, batch_size, repeat=1):
    """Batches per epoch, the last partial batch kept (SPEC §5.1)."""
    return math.ceil(num_examples * repeat / batch_size)
