"""The authors' published training logs as numbers (raw text or CSV) and a GAN run's critic
losses drawn beside them (``tools/plot.py RUN --authors-log FILE``)."""
import pytest

from conftest import REPO, tool
from test_plots import write_metrics
from gluon_distill.authors_log import AuthorsLogError, read_authors_log
from gluon_distill.viz import authors_iterations, critic_comparison, read_metrics

# the authors' text format: a first run of one window, a restart, a longer run, then a resumed
# run whose critic losses are NaN
RAW = """Namespace(batch_size=64, beta1=0.5, clamp_lower=-0.03, epochs=340, lrD=0.0005)
Start training from [Epoch 1]
[Epoch 1][Batch 99], Speed: 32.788 samples/sec,Loss_D=-13.622. Loss_G=3.784.  Loss_D_real=-10.771. Loss_D_fake=2.851. train_student_ori_net_CrossEntropy=6.191. train_student_ori_net_SmoothL1=2.686. cosine_length_loss_metric=0.643.
Namespace(batch_size=64, beta1=0.5, clamp_lower=-0.03, epochs=340, lrD=0.0005)
Start training from [Epoch 1]
[Epoch 1][Batch 99], Speed: 35.872 samples/sec,Loss_D=-13.583. Loss_G=3.534.  Loss_D_real=-11.073. Loss_D_fake=2.509. train_student_ori_net_CrossEntropy=6.051. train_student_ori_net_SmoothL1=2.727. cosine_length_loss_metric=0.637.
[Epoch 1][Batch 199], Speed: 36.237 samples/sec,Loss_D=-14.077. Loss_G=3.396.  Loss_D_real=-11.591. Loss_D_fake=2.486. train_student_ori_net_CrossEntropy=5.213. train_student_ori_net_SmoothL1=2.449. cosine_length_loss_metric=0.619.
[Epoch 2][Batch 99], Speed: 33.069 samples/sec,Loss_D=-12.751. Loss_G=3.006.  Loss_D_real=-10.218. Loss_D_fake=2.534. train_student_ori_net_CrossEntropy=3.924. train_student_ori_net_SmoothL1=1.988. cosine_length_loss_metric=0.567.
mAP=0.7827056887461108
[Epoch 1][Batch 99], Speed: 33.1 samples/sec,Loss_D=nan. Loss_G=nan.  Loss_D_real=nan. Loss_D_fake=nan. train_student_ori_net_CrossEntropy=1.376. train_student_ori_net_SmoothL1=0.670. cosine_length_loss_metric=nan.
"""
CSV = """run,epoch,batch,RPN_Conf,RPN_SmoothL1,RCNN_CrossEntropy,RCNN_SmoothL1,Loss_G,Loss_D
40,0,99,0.183,0.138,0.991,0.393,0.054,-0.117
41,0,99,0.183,0.138,0.992,0.393,0.007,-0.013
42,0,99,0.183,0.138,0.990,0.395,0.007,-0.012
42,0,199,0.155,0.109,0.837,0.412,0.007,-0.012
42,0,299,0.150,0.100,0.800,0.400,0.006,-0.011
"""


def test_raw_log_keeps_the_longest_finite_run_under_our_names(tmp_path):
    path = tmp_path / 'ssd.log'
    path.write_text(RAW)
    windows = read_authors_log(str(path))
    assert [(w['epoch'], w['batch']) for w in windows] == [(1, 99), (1, 199), (2, 99)]
    first = windows[0]
    assert first['Loss_D'] == -13.583 and first['Loss_G_adv'] == 3.534
    assert first['Loss_D_real'] == -11.073 and first['CrossEntropy'] == 6.051
    assert first['cosine_length_loss_metric'] == 0.637
    # 200 iterations per epoch estimated from the logged batch numbers (99, 199)
    assert authors_iterations(windows) == [100, 200, 300]
    assert authors_iterations(windows, per_epoch=259) == [100, 200, 359]


def test_csv_runs_are_split_by_the_run_column(tmp_path):
    path = tmp_path / 'rcnn.csv'
    path.write_text(CSV)
    windows = read_authors_log(str(path))
    assert [w['batch'] for w in windows] == [99, 199, 299]
    assert windows[0]['Loss_G_adv'] == 0.007 and windows[0]['RCNN_CrossEntropy'] == 0.990


def test_a_file_without_windows_is_an_error_naming_it(tmp_path):
    path = tmp_path / 'notes.txt'
    path.write_text('nothing logged here\n')
    with pytest.raises(AuthorsLogError, match='notes.txt: no window with a finite Loss_D'):
        read_authors_log(str(path))


def test_comparison_rows_match_iterations(tmp_path):
    path = tmp_path / 'ssd.log'
    path.write_text(RAW)
    run = write_metrics(tmp_path / 'gan', distill=True, epochs=3, iters=100)
    train, _ = read_metrics(str(run / 'metrics.jsonl'))
    rows = critic_comparison(train, read_authors_log(str(path)))
    marks = sorted({r[0] for r in rows})
    assert marks == [100, 300]  # their first window, our last iteration
    at_100 = {key: (ours, theirs) for it, key, ours, theirs in rows if it == 100}
    assert at_100['Loss_D'] == (pytest.approx(-0.1 * 100), -13.583)


def test_plot_tool_compares_one_run(tmp_path, capsys):
    path = tmp_path / 'ssd.log'
    path.write_text(RAW)
    run = write_metrics(tmp_path / 'gan', distill=True, epochs=3, iters=100)
    assert tool('plot')([str(run), '--authors-log', str(path)]) == 0
    out = capsys.readouterr().out
    assert '| 100 | Loss_D | -10 | -13.58 | 0.736 |' in out
    assert (run / 'critics_vs_authors.png').stat().st_size > 1000
    plain = write_metrics(tmp_path / 'plain')
    assert tool('plot')([str(plain), '--authors-log', str(path)]) != 0
    assert 'not a GAN distillation run' in capsys.readouterr().err


@pytest.mark.skipif(not (REPO.parent / 'shared' / 'data' / 'authors_logs').is_dir(),
                    reason='the authors\' logs as CSV are in ../shared (not shipped)')
def test_the_authors_ssd_log_as_csv():
    windows = read_authors_log(str(REPO.parent / 'shared' / 'data' / 'authors_logs' /
                                   'ssd512_mobilenet1.0_from_resnet50_v1_voc_train.csv'))
    assert windows[0]['Loss_D'] == -13.583 and windows[-1]['epoch'] == 221
