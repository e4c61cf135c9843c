"""The probe: a fixed set of inputs with the teacher's outputs on them (:class:`W2SProbe`), and how
a model's representation of it is read (:mod:`~lightning_w2s.probe.features`: forward hooks, pooling)."""

from lightning_w2s.probe.probe import W2SProbe

__all__ = ["W2SProbe"]
