"""Forward-hook capture and pooling."""

import pytest
import torch
from torch import nn

from lightning_w2s.probe.features import FeatureCapture, find_last_linear, pool, resolve_layer


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.encoder(x))


def test_default_is_input_of_last_linear():
    net = Net()
    cap = FeatureCapture(net).attach()
    x = torch.randn(5, 4)
    cap.set_batch(x)
    net(x)
    torch.testing.assert_close(cap.pop(), net.encoder(x))
    assert find_last_linear(net) == "head"
    assert "input of `head`" in cap.describe() and "default" in cap.describe()
    cap.detach()
    assert not net.head._forward_hooks


def test_named_layer_captures_its_output():
    net = Net()
    cap = FeatureCapture(net, layer="encoder.0").attach()
    x = torch.randn(3, 4)
    cap.set_batch(x)
    net(x)
    torch.testing.assert_close(cap.pop(), net.encoder[0](x))


def test_unknown_layer_lists_close_matches():
    with pytest.raises(ValueError, match=r"`layer`='encodr' is not a submodule.*did you mean 'encoder'"):
        resolve_layer(Net(), "encodr")


def test_no_linear_means_layer_is_required():
    with pytest.raises(ValueError, match=r"has no nn.Linear; pass `layer=`"):
        FeatureCapture(nn.Sequential(nn.Conv1d(1, 1, 1)))


def test_sequence_pooling_with_attention_mask():
    x = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    torch.testing.assert_close(pool(x, "mean", mask)[0], x[0, :2].mean(0))
    torch.testing.assert_close(pool(x, "mean", mask)[1], x[1].mean(0))
    torch.testing.assert_close(pool(x, "last", mask)[0], x[0, 1])
    torch.testing.assert_close(pool(x, "last", mask)[1], x[1, 2])
    torch.testing.assert_close(pool(x, "first"), x[:, 0])
    assert pool(x, "flatten").shape == (2, 6)
    assert pool(x, lambda t: t.sum(1)).shape == (2, 2)


def test_wrong_pooling_for_shape():
    with pytest.raises(ValueError, match=r"`pooling`='last' needs a 3-D"):
        pool(torch.randn(2, 3), "last")
    with pytest.raises(ValueError, match=r"`pooling`='none' needs a 2-D"):
        pool(torch.randn(2, 3, 4), "none")
