"""The distillation methods: one dict, name -> builder of a
:class:`~gluon_distill.distill.step.Distiller` from its config subsection.

``distill.method`` is one name or several joined by ``+`` (``gan+fgfi``): the step adds
every method's loss to the detection loss and runs every auxiliary update. ``head_only`` is
the ablation (adapters + teacher-initialised head, detection loss only) and combines with
nothing. A builder is called as ``build(section, plan, ctx, kv, student_params,
data_shape=..., family=...)``; ``student_params`` are the parameters the student's trainer
holds; ``family`` (:mod:`gluon_distill.families`) gives anchors and ground truth to the
methods that need them (FGFI).
"""
from ..models.ssd import ModelError
from . import cosine, fgfi, gan, mimic

METHODS = {
    'gan': gan.build,
    'mimic': mimic.build,
    'fgfi': fgfi.build,
    'cosine': cosine.build,
}
ABLATION = 'head_only'


def parse_methods(method):
    """``distill.method`` -> list of method names (empty for ``head_only``), or a clear error."""
    names = [n.strip() for n in str(method).split('+')]
    allowed = [ABLATION] + list(METHODS)
    for n in names:
        if n not in allowed:
            raise ModelError('distill.method: expected one of {} (or several joined by +, '
                             'e.g. gan+fgfi), got {!r}'.format(', '.join(allowed), method))
    if ABLATION in names:
        if len(names) > 1:
            raise ModelError('distill.method: {} is the ablation without any distillation '
                             'loss and combines with nothing, got {!r}'.format(ABLATION, method))
        return []
    if len(set(names)) != len(names):
        raise ModelError('distill.method: {!r} names a method twice'.format(method))
    return names


def build_distillers(d, plan, ctx, kv, student_params, data_shape, family=None):
    """The distillers of ``distill`` config ``d``, in the order ``d.method`` lists them.

    ``student_params``: the student's (and pair adapters') parameters; each distiller's
    :meth:`~gluon_distill.distill.step.Distiller.student_params` are added to it here, and a
    method with an optimizer of its own over the student (GAN's ``adv_optimizer: adam``) is
    built last so that it sees them all. Returns ``(distillers, params)``."""
    names = parse_methods(d.method)
    params = list(student_params)
    built = {}
    for name in sorted(names, key=lambda n: n == 'gan'):
        section = getattr(d, name)
        built[name] = METHODS[name](section, plan, ctx, kv, params, data_shape=data_shape,
                                    family=family)
        params += built[name].student_params()
    return [built[n] for n in names], params
