"""Teacher ranking before or during training: :func:`rank_teachers` / :func:`score_teachers`
(:mod:`~lightning_w2s.ranking.scores`), the Dawid-Skene label model and the cross-fitted cheap
student they use (:mod:`~lightning_w2s.ranking.label_model`, :mod:`~lightning_w2s.ranking.cheap_student`)."""

from lightning_w2s.ranking.scores import SCORES, rank_teachers, score_teachers

__all__ = ["SCORES", "rank_teachers", "score_teachers"]
