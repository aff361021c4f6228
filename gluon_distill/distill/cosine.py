"""Cosine attention: OUR READING of a term the authors name but never define.

The authors' results table labels a row "ResNet50 (with cosine attention)" (Table 1, 78.4
beside 77.7 without) and its Faster R-CNN GAN rows "with GAN-KD and cosine attention"; their
SSD log logs ``cosine_length_loss_metric`` (0.643 at the first window, 0.37 to 0.40 from
epoch 30 on). No definition, code or formula was published. This module is one reasonable
reading of the two names, labelled as such wherever it is used:

* **cosine, length**: per location of a paired map, the adapted student vector ``s`` (the
  student's map after its 1x1 adapters, the teacher's channels) and the teacher vector ``t``
  (``C`` channels) differ in direction and in length::

      d = (1 - cos(s, t)) + | |s| - |t| | / (|s| + |t|)

  Direction in [0, 2], relative length difference in [0, 1): scale-free, bounded, and 0 only
  when ``s == t``;
* **attention**: the locations are weighted by an attention map of the teacher's feature norms
  (Zagoruyko & Komodakis' activation-based attention, ``|t|^p`` summed over channels with
  ``p = 2``), normalised to sum 1 per image and scale: ``a = |t|^p / sum_hw |t|^p``.

The logged value ``cosine_length`` is the attention-weighted mean of ``d``, averaged over the
paired scales and the images of the batch: unweighted, in [0, 3), of the same form as the
authors' 0.64 -> 0.39. The loss added to the student's::

    weight * mean_k mean_b sum_hw a_k[b, h, w] * d_k[b, h, w]

``weight`` 0 keeps the method as a pure diagnostic (``cosine_length`` logged, no gradient).
Built from ``distill.cosine.*`` by :func:`build`; no parameters of its own.
"""
import mxnet as mx
from .step import Distiller

# added to squared norms: the norms' floor (0.01) bounds the direction's gradient where a
# student vector is (nearly) zero, e.g. a location every ReLU channel left dark
EPS = 1e-4


def cosine_length(student, teacher, attention_power=2.0):
    """Per image, the attention-weighted ``(1 - cos) + relative length difference`` of one
    paired scale: ``student``, ``teacher`` ``(B, C, H, W)`` -> ``(B,)``."""
    s_norm = mx.nd.sqrt(mx.nd.sum(mx.nd.square(student), axis=1) + EPS)      # (B, H, W)
    t_norm = mx.nd.sqrt(mx.nd.sum(mx.nd.square(teacher), axis=1) + EPS)
    cos = mx.nd.sum(student * teacher, axis=1) / (s_norm * t_norm)
    length = mx.nd.abs(s_norm - t_norm) / (s_norm + t_norm)
    distance = (1 - cos) + length
    attention = mx.nd.power(t_norm.detach(), attention_power)
    attention = mx.nd.broadcast_div(attention, mx.nd.sum(attention, axis=(1, 2), keepdims=True))
    return mx.nd.sum(attention * distance, axis=(1, 2))


class CosineDistiller(Distiller):
    """Attention-weighted cosine + length imitation of the paired maps (our reading of the
    authors' "cosine attention"; see the module's text).

    Parameters
    ----------
    pairs : list of (int, int)
        ``(student map index, teacher map index)`` of equal spatial size.
    weight : float
        Weight of the term in the student's loss (0: logged only).
    attention_power : float
        ``p`` of the attention map ``|t|^p`` (0: every location alike).
    epochs : int
        After this many epochs the term stops (-1: never).
    """
    name = 'cosine'
    loss_name = 'Loss_cosine'

    def __init__(self, pairs, weight=1.0, attention_power=2.0, epochs=-1):
        self.pairs = list(pairs)
        self.weight = weight
        self.attention_power = attention_power
        self.epochs = epochs
        self._values = []

    def active(self, epoch, iteration=0):
        return self.epochs < 0 or epoch < self.epochs

    def describe(self):
        return ('cosine (our reading of "cosine attention"): weight {:g}, attention |t|^{:g}, '
                '{}, pairs {}'.format(self.weight, self.attention_power,
                                      'every epoch' if self.epochs < 0 else
                                      'the first {} epochs'.format(self.epochs), self.pairs))

    def begin(self, batch, ctx_list):
        self._values = []

    def loss(self, index, teacher_maps, student_maps, batch_total):
        student, teacher = self.select(student_maps, teacher_maps)
        terms = [cosine_length(s, t, self.attention_power).sum()
                 for s, t in zip(student, teacher)]
        value = mx.nd.add_n(*terms) / (len(terms) * batch_total)
        self._values.append(value.detach())
        return self.weight * value

    def loss_metrics(self):
        if not self._values:
            return {}
        ctx = self._values[0].context
        total = mx.nd.add_n(*[v.as_in_context(ctx) for v in self._values])
        self._values = []
        return {'cosine_length': total}


def build(c, plan, ctx, kv, student_params=None, data_shape=None, family=None):
    """The cosine distiller of config section ``distill.cosine`` (``c``) for ``plan``."""
    return CosineDistiller(plan.pairs, c.weight, c.attention_power, c.epochs)
