"""gluon-distill: adversarial knowledge distillation for one-stage detectors (MXNet Gluon)."""
import os

from setuptools import find_packages, setup

# Environment markers, not ``sys.version_info``: the requirements must be right for the Python
# that installs the package, whichever Python built its metadata.
PYTHON_SPECIFIC = [
    # MXNet 1.9.1 uses NumPy aliases removed in 1.24: below 1.24 wherever a wheel exists
    # (CPython <= 3.11); 3.12 needs 1.26 (its first release with 3.12 wheels), whose removed
    # aliases gluon_distill._compat restores before MXNet is imported.
    'numpy<1.24; python_version < "3.12"',
    'numpy>=1.26,<2; python_version >= "3.12"',
    # MXNet 1.9.1 imports distutils.version, gone from the standard library in 3.12;
    # setuptools provides it again.
    'setuptools; python_version >= "3.12"',
]

setup(
    name='gluon-distill',
    version='0.1.0',
    description='GAN knowledge distillation for SSD object detectors on MXNet Gluon / GluonCV',
    long_description=open('README.md').read() if os.path.exists('README.md') else '',
    long_description_content_type='text/markdown',
    # the experiment configs ship inside the package as gluon_distill/experiments (found by
    # gluon_distill.resources: --config voc/NAME.yaml works from any folder once installed)
    packages=find_packages(include=['gluon_distill', 'gluon_distill.*']) + [
        'gluon_distill.experiments'],
    package_dir={'gluon_distill.experiments': 'experiments'},
    package_data={'gluon_distill.experiments': ['*.md', '*/*.yaml']},
    entry_points={'console_scripts': ['gluon-distill = gluon_distill.commands:main']},
    python_requires='>=3.8',
    install_requires=PYTHON_SPECIFIC + [
        'gluoncv>=0.10,<0.11',
        'matplotlib',
        'pycocotools',
        'pyyaml',
        'tqdm',
        'Pillow',
        'opencv-python-headless',
    ],
    extras_require={
        'cpu': ['mxnet==1.9.1'],
        'cu112': ['mxnet-cu112==1.9.1'],
        'test': ['pytest'],
        'deploy': ['onnx==1.16.2', 'onnxruntime==1.19.2'],
        # built from source against MXNet: see docs/multi-machine.md (Horovod) for the environment
        'horovod': ['horovod==0.28.1'],
    },
    license='Apache-2.0',
)
