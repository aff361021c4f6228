"""gluon-distill: adversarial knowledge distillation for one-stage detectors (MXNet Gluon)."""
import sys

from setuptools import find_packages, setup

# MXNet 1.9.1 needs the NumPy aliases removed in 1.24; pin below 1.24 wherever a wheel exists
# (CPython <= 3.11). Newer Pythons get a newer NumPy and gluon_distill._compat restores them.
NUMPY = 'numpy<1.24' if sys.version_info < (3, 12) else 'numpy<2'

setup(
    name='gluon-distill',
    version='0.1.0',
    description='GAN knowledge distillation for SSD object detectors on MXNet Gluon / GluonCV',
    long_description=open('README.md').read() if __import__('os').path.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['gluon_distill', 'gluon_distill.*']),
    python_requires='>=3.8',
    install_requires=[
        NUMPY,
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
    },
    license='Apache-2.0',
)
