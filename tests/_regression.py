"""A least-squares regression student and a synthetic W2S regression task where Charikar et al.'s
Thm 1 holds with equality (shared by ``test_regression.py`` and ``ddp_script.py``).

Why the equality is exact here: the student is ``f_s = φ(x)A + c`` with ``φ`` a *frozen* random
feature map (``tanh`` of a fixed linear layer), so its function class on the probe is the linear
subspace ``V = span{φ_1, …, φ_width, 1}``. It is trained on the probe's own inputs with the
teacher's values as targets, by full-batch L-BFGS on the mean squared error in float64, to
convergence: ``f_s`` is then the orthogonal projection of ``f_w`` onto ``V`` in the probe's
empirical inner product. The gold target is realizable, ``f* = φ(x)A* + c* ∈ V``. Hence
``f_s − f* ∈ V`` and ``f_w − f_s ⊥ V``, and on the probe ``‖f_w − f*‖² = ‖f_w − f_s‖² + ‖f_s − f*‖²``
(Pythagoras): ``err(w) − err(s) = misfit`` exactly, i.e. ``gold/sq_gain == bounds/predicted_gain``
up to the optimiser's tolerance. ``realizable=False`` adds a component to ``f*`` outside ``V``
(``cos(2 x_2)``), which breaks the equality.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

D_IN, WIDTH = 6, 12


class LeastSquaresHead(L.LightningModule):
    """``f(x) = head(tanh(body(x)))`` with a frozen ``body``: a linear (least-squares) head on frozen
    features; ``outputs == 1`` returns ``(batch,)``. Full-batch L-BFGS, ``max_iter`` per step."""

    def __init__(self, outputs: int = 1, seed: int = 0, max_iter: int = 25):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Linear(D_IN, WIDTH), nn.Tanh()).requires_grad_(False)
        self.head = nn.Linear(WIDTH, outputs)
        self.outputs, self.max_iter = outputs, max_iter

    def forward(self, x):
        out = self.head(self.body(x))
        return out.squeeze(-1) if self.outputs == 1 else out

    def training_step(self, batch, _):
        x, y = batch
        r = self(x) - y
        return (r**2 if r.ndim == 1 else (r**2).sum(-1)).mean()

    def configure_optimizers(self):
        return torch.optim.LBFGS(self.head.parameters(), lr=1, max_iter=self.max_iter, tolerance_grad=1e-15, tolerance_change=1e-20, history_size=50, line_search_fn="strong_wolfe")


def regression_task(model: LeastSquaresHead, n: int = 400, realizable: bool = True, seed: int = 0):
    """``(x, f_w, f*)`` for ``model``'s frozen features: gold ``f* = φ(x)A* + c*`` (plus a component
    outside the span unless ``realizable``), teacher ``f_w = f* + error``, the error partly inside the
    span (``0.3 φ_1``), partly outside (``sin``, a square, noise). Shapes ``(n,)`` for one output."""
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(n, D_IN, generator=g)
    with torch.no_grad():
        phi = model.body.double()(x.double())
    model.float()
    m = model.outputs
    a = torch.randn(WIDTH, m, generator=g, dtype=torch.float64)
    c = torch.randn(m, generator=g, dtype=torch.float64)
    xd = x.double()
    f_star = phi @ a + c
    if not realizable:
        f_star = f_star + 0.8 * torch.cos(2 * xd[:, 2:3])
    error = 0.8 * torch.sin(2 * xd[:, :1]) + 0.5 * xd[:, 1:2] ** 2 + 0.3 * phi[:, :1]
    error = error + 0.3 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    f_w = f_star + error * torch.linspace(0.5, 1.5, m, dtype=torch.float64)
    if m == 1:
        f_star, f_w = f_star[:, 0], f_w[:, 0]
    return x, f_w, f_star
