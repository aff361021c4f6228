"""Feature mimic (Romero et al.'s hint loss): L2 between the student's adapted maps and the
teacher's, on every paired scale. The plain baseline of most feature-distillation papers.

Loss added to the student's detection loss::

    weight * sum_k mean_{b, c, h, w} (teacher_k - student_k)^2

``student_k`` is the student's map after its 1x1 adapters (the teacher's channels; see
:mod:`gluon_distill.models.student`), so the method needs no layer of its own. Built from
``distill.mimic.*`` by :func:`build`.
"""
import mxnet as mx
from .step import Distiller


class MimicDistiller(Distiller):
    """L2 between paired student and teacher maps.

    Parameters
    ----------
    pairs : list of (int, int)
        ``(student map index, teacher map index)`` of equal spatial size.
    weight : float
        Weight of the term in the student's loss.
    """
    name = 'mimic'
    loss_name = 'Loss_mimic'

    def __init__(self, pairs, weight=1.0):
        self.pairs = list(pairs)
        self.weight = weight

    def describe(self):
        return 'mimic: weight {:g} on pairs {}'.format(self.weight, self.pairs)

    def loss(self, index, teacher_maps, student_maps, batch_total):
        student, teacher = self.select(student_maps, teacher_maps)
        terms = [mx.nd.square(t - s).sum() / (batch_total * (t.size // t.shape[0]))
                 for s, t in zip(student, teacher)]
        return self.weight * mx.nd.add_n(*terms)


def build(m, plan, ctx, kv, student_params=None, data_shape=None, family=None):
    """The mimic distiller of config section ``distill.mimic`` (``m``) for ``plan``."""
    return MimicDistiller(plan.pairs, m.weight)
