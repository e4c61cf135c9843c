"""What a person reads: the TensorBoard layout and writer (:mod:`~lightning_w2s.dashboard.tensorboard`),
the markdown text (:mod:`~lightning_w2s.dashboard.text`) and the reliability diagrams
(:mod:`~lightning_w2s.dashboard.figures`)."""
