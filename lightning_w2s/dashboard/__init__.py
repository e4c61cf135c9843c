"""What a person reads: the TensorBoard layout and writer (:mod:`~lightning_w2s.dashboard.tensorboard`),
the markdown text (:mod:`~lightning_w2s.dashboard.text`), where that text goes in each logger
(:mod:`~lightning_w2s.dashboard.loggers`) and the reliability diagrams
(:mod:`~lightning_w2s.dashboard.figures`)."""
