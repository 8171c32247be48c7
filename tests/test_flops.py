"""models/flops.py: the multiply-adds of a built model, counted by hand for the FCN and Conv2."""
import pytest

from models import build_model
from models.flops import forward_macs

CONV2_MACS = 32 * 32 * 9 * 3 * 64 + 32 * 32 * 9 * 64 * 64 + 16 * 16 * 64 * 256 + 256 * 256 + 256 * 10


@pytest.mark.parametrize("signed", [True, False])
def test_forward_macs_count_every_conv_and_dense(signed):
    assert forward_macs(build_model("FCN", signed=signed)) == 784 * 300 + 300 * 100 + 100 * 10
    assert forward_macs(build_model("Conv2", signed=signed)) == CONV2_MACS
