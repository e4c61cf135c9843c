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


def _padded(side: str, lengths=(3, 4, 1, 2, 5), t: int = 5, seed: int = 0):
    """A (b, t, d) activation and its attention mask, padded on ``side`` ("left", "right", or
    "mixed": alternating rows, as a batch collated from two tokenizers would be)."""
    x = torch.randn(len(lengths), t, 3, generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(len(lengths), t, dtype=torch.long)
    for i, n in enumerate(lengths):
        left = side == "left" or (side == "mixed" and i % 2 == 0)
        (mask[i, t - n :] if left else mask[i, :n]).fill_(1)
    return x, mask


def _loop_reference(x, mask, pooling):
    """Row by row, the real tokens' positions read off the mask with plain Python."""
    rows = []
    for i in range(x.shape[0]):
        real = [j for j in range(x.shape[1]) if mask is None or int(mask[i, j]) == 1]
        rows.append({"first": x[i, real[0]], "last": x[i, real[-1]], "mean": x[i, real].mean(0)}[pooling])
    return torch.stack(rows)


@pytest.mark.parametrize("side", ["left", "right", "mixed", "no mask"])
@pytest.mark.parametrize("pooling", ["first", "last", "mean"])
def test_pooling_reads_the_real_tokens_whatever_the_padding_side(side, pooling):
    x, mask = _padded("left" if side == "no mask" else side)
    mask = None if side == "no mask" else mask
    torch.testing.assert_close(pool(x, pooling, mask), _loop_reference(x, mask, pooling))


def test_first_and_last_of_a_left_padded_batch_are_not_positional():
    x, mask = _padded("left")
    assert not torch.equal(pool(x, "first", mask), x[:, 0])  # row 0 starts with padding
    torch.testing.assert_close(pool(x, "last", mask), x[:, -1])  # left padding: the last token is real


def test_hook_is_registered_only_inside_attached():
    net = Net()
    cap = FeatureCapture(net)
    assert not net.head._forward_hooks
    with pytest.raises(KeyError), cap.attached():
        assert len(net.head._forward_hooks) == 1
        raise KeyError("a failure inside the pass")
    assert not net.head._forward_hooks


def test_failing_pooling_callable_is_named():
    net = Net()
    cap = FeatureCapture(net, pooling=lambda x: x[:, 9])  # the head's input has 8 columns
    with cap.attached():
        cap.set_batch(torch.zeros(2, 4))
        net(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"the `pooling` callable .* failed on a probe batch .*IndexError"):
        cap.pop()
