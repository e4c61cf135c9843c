"""What every benchmark shares: the offline data sources (:mod:`.sources`), the W2S tasks built on
them (:mod:`.tasks`), the student models and training loop (:mod:`.students`) and printing helpers
(:mod:`.report`)."""
