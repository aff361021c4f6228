#!/usr/bin/env python
"""Where the time of a distillation step goes, and what it costs over a plain student step.

On the same batches, in one run, at 512 px (ResNet50 teacher -> MobileNet 1.0 student, the
paper's most used pair, random weights) and at 128 px (the demo's tiny networks), times:

  (a)  the teacher's feature forward pass (inference mode, outside autograd)
  (b)  a plain training step of the same student with its own head (GluonCV's recipe: SGD)
  (b') a training step of student + adapters + teacher head, SSD loss only (head-only)
  (c)  one critic update (forward real + fake, backward, Adam, clipping) on given maps
  (g)  the adversarial pass: critics forward on the student maps and the gradient back to them
  (d)  a full distillation step (DistillStep.run_step: one student forward serves the critic
       and the student updates; with the default adv_optimizer adam, the adversarial gradient
       is applied by its own Adam)
  and, as the "before" state, (b) and (d) with GluonCV's SSDMultiBoxLoss (a host sync per
  device per step).

Components are interleaved (one of each per round) so that a change of machine load hits them
alike. Each is timed from a drained engine to a drained engine (mx.nd.waitall). Then, each in
its own process, the peak resident memory (VmHWM) of a distillation run and of the plain
student run at the same batch. Last line:
``overhead=X.XX distill_vs_baseline=Y.YY``, the larger of the two sizes for each, with
overhead = d / (a + b' + n_critic * c + g) and distill_vs_baseline = d / b (medians).

    python bench/step_time.py                         # both sizes, a few minutes on 2 cores
    python bench/step_time.py --sizes 128 --batch128 32 --ctx cpu:0,1
    python bench/step_time.py --sizes 512 --critic bn --critic-width 512 --critic-batch separate \
        --adv-optimizer shared          # the former default critic
"""
import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import NETWORKS, datasets, load, model_config, peak_rss_mb, stats, timed  # noqa: E402

import mxnet as mx  # noqa: E402
from mxnet import autograd  # noqa: E402

HYBRID = dict(static_alloc=True, static_shape=True)


def build(size, batch, ctx_list, n_critic=1, arms=('plain', 'distill'), num_batches=4,
          critic=None):
    """Networks, steps and ``num_batches`` fixed batches for one size. ``critic``: a
    ``distill.gan`` section (default: the configuration's defaults)."""
    from gluon_distill.config import GanConfig
    critic = critic or GanConfig()
    from gluoncv.loss import SSDMultiBoxLoss
    from gluon_distill.data.loader import TrainLoader
    from gluon_distill.models.teacher import Teacher, plan_student
    from gluon_distill.distill.gan import build as build_gan
    from gluon_distill.distill.step import DistillStep
    from gluon_distill.engine.steps import DetectionStep, make_trainer
    from gluon_distill.families.ssd import SSDLoss
    from gluon_distill.models.ssd import anchors_of, build_ssd, initialize, resolve_arch

    bundle, _ = datasets('synthetic', min_size=300, max_size=500, num_train=32)
    classes = bundle.classes
    t_cfg, s_cfg = model_config(size, 'teacher'), model_config(size, 'student')
    kv = 'device' if len(ctx_list) > 1 else None
    env = {'ctx': ctx_list, 'batch': batch}
    mx.random.seed(0)
    s_arch = resolve_arch(s_cfg.network, size, s_cfg.width, s_cfg.blocks)
    if 'plain' in arms:
        own = build_ssd(s_arch, classes)
        initialize(own, ctx_list)
        anchors = anchors_of(own, size, ctx_list[0])
        own.hybridize(**HYBRID)
        own_trainer = make_trainer(own.collect_params(), 'sgd', 1e-3, 0.9, 5e-4, kv)
        env['plain'] = DetectionStep(own, ctx_list, own_trainer, SSDLoss())
        env['plain_gluoncv'] = DetectionStep(own, ctx_list, own_trainer,
                                              loss=SSDLoss(SSDMultiBoxLoss()))
    if 'distill' in arms:
        t_arch = resolve_arch(t_cfg.network, size, t_cfg.width, t_cfg.blocks)
        t_net = build_ssd(t_arch, classes)
        initialize(t_net, ctx_list)
        anchors_of(t_net, size, ctx_list[0])
        teacher = Teacher(t_net, t_arch, classes, list(s_cfg.mean), list(s_cfg.std), 'random')
        plan = plan_student(teacher, s_cfg, classes, ctx_list)
        student_anchors = anchors_of(plan.net, size, ctx_list[0])
        if 'plain' in arms:
            assert student_anchors.shape == anchors.shape, 'own and teacher heads differ'
        anchors = student_anchors
        critic.n_critic = n_critic
        # as train_distilled wires it: with adv_optimizer adam an Adam over the student
        # applies the adversarial gradient, so neither trainer keeps weights on the KVStore
        distiller = build_gan(critic, plan, ctx_list, kv, plan.net.collect_params().values())
        separate = distiller.loss_trainer is not None
        trainer = make_trainer(plan.net.collect_params(), 'sgd', 1e-3, 0.9, 5e-4, kv,
                               update_on_kvstore=False if separate else None)
        step = DistillStep(plan.net, t_net.features, ctx_list, trainer, distiller)
        step.hybridize(**HYBRID)
        plan.net.hybridize(**HYBRID)
        env.update(distill=step, distiller=distiller, plan=plan,
                   distill_gluoncv=DistillStep(plan.net, t_net.features, ctx_list, trainer,
                                               distiller, loss=SSDLoss(SSDMultiBoxLoss())),
                   head_only=DetectionStep(plan.net, ctx_list, trainer, SSDLoss()))
    loader = TrainLoader(bundle.train, size, anchors, batch, s_cfg.mean, s_cfg.std, ctx_list,
                         seed=0, num_workers=0, pipeline='fast')
    batches = []
    for b in loader.epoch(0):
        batches.append(b)
        if len(batches) == num_batches:
            break
    env['batches'] = batches
    env['prepare'] = loader.prepare
    for name in ('plain', 'plain_gluoncv', 'distill', 'distill_gluoncv', 'head_only'):
        if name in env:
            env[name].prepare = loader.prepare
    return env


def components(env, n_critic):
    """name -> callable(batch index), every callable doing one unit of work."""
    step, d = env['distill'], env['distiller']
    batches, batch_total = env['batches'], env['batch']
    images = [env['prepare'](b)[0] for b in batches]
    # given maps for (c) and (g): the teacher's and the student's (train mode, not recorded)
    teacher_maps, student_maps, leaves = [], [], []
    for xs in images:
        t_dev, s_dev, l_dev = [], [], []
        for x in xs:
            with autograd.train_mode():
                s_maps = step.forward(x)[:-2]
            t_maps = step.teacher_features(x)
            s_sel, t_sel = d.select(s_maps, t_maps)
            t_dev.append(t_sel)
            s_dev.append([m.detach() for m in s_sel])
            leaf = [m.copy() for m in s_sel]
            for m in leaf:
                m.attach_grad()
            l_dev.append(leaf)
        teacher_maps.append(t_dev)
        student_maps.append(s_dev)
        leaves.append(l_dev)

    def teacher(i):
        step.teacher_maps(images[i])

    def critic(i):
        d.critic_forward_backward(teacher_maps[i], student_maps[i], batch_total)
        d.critic_step()

    def adversarial(i):
        with autograd.record():
            losses = [d.adversarial_loss(maps, batch_total, t)
                      for maps, t in zip(leaves[i], teacher_maps[i])]
        autograd.backward(losses)

    comps = [('a', '(a)  teacher features', teacher),
             ('b', '(b)  plain student step, own head', lambda i: env['plain'].run_step(
                 batches[i])),
             ("b'", "(b') student + adapters + teacher head, SSD loss",
              lambda i: env['head_only'].run_step(batches[i])),
             ('c', '(c)  one critic update', critic),
             ('g', '(g)  adversarial pass (critics fwd + grad to maps)', adversarial),
             ('d', '(d)  full distillation step', lambda i: step.run_step(batches[i])),
             ('b_gcv', '(b)  plain step, GluonCV loss [before]',
              lambda i: env['plain_gluoncv'].run_step(batches[i])),
             ('d_gcv', '(d)  distillation step, GluonCV loss [before]',
              lambda i: env['distill_gluoncv'].run_step(batches[i]))]
    return comps


def bench_size(size, batch, ctx_list, warmup, iters, n_critic, critic):
    env = build(size, batch, ctx_list, n_critic, critic=critic)
    comps = components(env, n_critic)
    nb = len(env['batches'])
    for key, _, fn in comps:
        for i in range(warmup):
            fn(i % nb)
    mx.nd.waitall()
    load_before = os.getloadavg()
    times = {key: [] for key, _, _ in comps}
    for it in range(iters):
        for key, _, fn in comps:
            times[key].append(timed(lambda: fn(it % nb)))
    med = {key: stats(v)[0] for key, v in times.items()}
    t, s = NETWORKS[size][0], NETWORKS[size][1]
    print('\n## {} px: teacher {} -> student {}, batch {} on {}, n_critic {}, {} rounds after {} '
          'warm-up'.format(size, _net_name(t), _net_name(s), batch, _ctx_name(ctx_list),
                           n_critic, iters, warmup))
    print('load average at start {:.2f}, at end {:.2f} ({} cores)'.format(
        load_before[0], os.getloadavg()[0], os.cpu_count()))
    print('| component | median ms | min ms | max ms | sd ms | img/s |')
    print('|---|---:|---:|---:|---:|---:|')
    for key, label, _ in comps:
        m, lo, hi, sd = stats(times[key])
        print('| {} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.1f} |'.format(
            label, 1e3 * m, 1e3 * lo, 1e3 * hi, 1e3 * sd, batch / m))
    parts = med['a'] + med["b'"] + n_critic * med['c'] + med['g']
    overhead = med['d'] / parts
    vs = med['d'] / med['b']
    print('a + b\' + n_critic*c + g = {:.1f} ms; overhead d/(sum) = {:.3f}; distill_vs_baseline '
          'd/b = {:.2f}; before (GluonCV loss): d/b = {:.2f}, step speed-up d_before/d = {:.2f}, '
          'b_before/b = {:.2f}'.format(1e3 * parts, overhead, vs, med['d_gcv'] / med['b_gcv'],
                                       med['d_gcv'] / med['d'], med['b_gcv'] / med['b']))
    return overhead, vs


def _net_name(spec):
    network, width, blocks = spec
    return network if network != 'tiny' else 'tiny(width {}, blocks {})'.format(width, blocks)


def _ctx_name(ctx_list):
    return ','.join(str(c) for c in ctx_list)


def memory_child(arm, size, batch, ctx_list, steps, critic):
    """Run ``steps`` iterations of one arm and print its peak resident memory."""
    env = build(size, batch, ctx_list, arms=('distill',) if arm == 'distill' else ('plain',),
                num_batches=2, critic=critic)
    step = env[arm]
    for i in range(steps):
        step.run_step(env['batches'][i % 2])
    mx.nd.waitall()
    print('peak_rss_mb={:.0f}'.format(peak_rss_mb()))


def memory(size, batch, ctx_spec, critic, steps=3):
    out = {}
    for arm in ('plain', 'distill'):
        cmd = [sys.executable, os.path.abspath(__file__), '--memory-child', arm, '--sizes',
               str(size), '--batch{}'.format(size), str(batch), '--ctx', ctx_spec,
               '--iters', str(steps), '--critic', critic.critic, '--critic-width',
               str(critic.critic_width), '--critic-batch', critic.critic_batch,
               '--adv-optimizer', critic.adv_optimizer]
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True)
        lines = [l for l in res.stdout.splitlines() if l.startswith('peak_rss_mb=')]
        if res.returncode or not lines:
            raise RuntimeError('memory child {} failed:\n{}'.format(arm, res.stderr[-2000:]))
        out[arm] = float(lines[-1].split('=')[1])
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', type=int, nargs='+', default=[512, 128],
                        choices=sorted(NETWORKS))
    parser.add_argument('--batch512', type=int, default=2)
    parser.add_argument('--batch128', type=int, default=16)
    parser.add_argument('--ctx', default='cpu', help='cpu, cpu:0,1, gpu:0,1')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--iters', type=int, default=8)
    parser.add_argument('--n-critic', type=int, default=1)
    parser.add_argument('--no-memory', action='store_true')
    parser.add_argument('--critic', default=None, help='dcgan, bn, plain or spectral '
                        '(default: distill.gan.critic)')
    parser.add_argument('--critic-width', type=int, default=None,
                        help='default: distill.gan.critic_width')
    parser.add_argument('--critic-batch', default=None, help='joint or separate '
                        '(default: distill.gan.critic_batch)')
    parser.add_argument('--adv-optimizer', default=None, help='adam or shared '
                        '(default: distill.gan.adv_optimizer)')
    parser.add_argument('--memory-child', choices=['plain', 'distill'], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from gluon_distill.config import GanConfig
    from gluon_distill.engine.devices import parse_ctx
    ctx_list = parse_ctx(args.ctx)
    critic = GanConfig()
    for key in ('critic', 'critic_width', 'critic_batch', 'adv_optimizer'):
        if getattr(args, key) is not None:
            setattr(critic, key, getattr(args, key))
    batch = {512: args.batch512, 128: args.batch128}
    if args.memory_child:
        size = args.sizes[0]
        memory_child(args.memory_child, size, batch[size], ctx_list, args.iters, critic)
        return 0
    print('# step time; critic {} (width {}, {} batch), adversarial optimizer {}; {}; MXNet '
          '{}'.format(critic.critic, critic.critic_width, critic.critic_batch,
                      critic.adv_optimizer, load(), mx.__version__))
    results = {}
    for size in args.sizes:
        results[size] = bench_size(size, batch[size], ctx_list, args.warmup, args.iters,
                                   args.n_critic, critic)
    if not args.no_memory:
        print('\n## peak resident memory (VmHWM), each arm in its own process, {} steps'.format(
            3))
        print('| size | batch | plain student run MiB | distillation run MiB | ratio |')
        print('|---:|---:|---:|---:|---:|')
        for size in args.sizes:
            mem = memory(size, batch[size], args.ctx, critic)
            print('| {} | {} | {:.0f} | {:.0f} | {:.2f} |'.format(
                size, batch[size], mem['plain'], mem['distill'], mem['distill'] / mem['plain']))
    print('\n# {}'.format(load()))
    overhead = max(r[0] for r in results.values())
    vs = max(r[1] for r in results.values())
    print('overhead={:.2f} distill_vs_baseline={:.2f}'.format(overhead, vs))
    return 0


if __name__ == '__main__':
    sys.exit(main())
