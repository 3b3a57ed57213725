"""Installation script for mapet (MaPeT pre-training toolbox)."""
import os
import os.path as osp
import shutil
import sys
import warnings

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def get_version() -> str:
    namespace: dict = {}
    with open(osp.join(HERE, 'mapet', 'version.py'), encoding='utf-8') as f:
        exec(compile(f.read(), 'version.py', 'exec'), namespace)
    return namespace['__version__']


def add_mim_extension() -> None:
    """Expose ``configs``/``tools``/``model-index.yml`` inside the package.

    Same pattern as mmpretrain: ``mapet/.mim`` gets symlinks on an editable
    install and copies on a regular one, so ``_base_ = 'mapet::...'`` resolves
    from any folder through ``mmengine``'s package-config lookup.
    """
    # `develop` and pip's PEP 660 `editable_wheel`: symlinks keep the configs
    # live for developers; sdist/wheel builds copy them.
    editable = 'develop' in sys.argv or any('editable' in a for a in sys.argv)
    mode = 'symlink' if editable else 'copy'

    filenames = ['tools', 'configs', 'model-index.yml']
    mim_path = osp.join(HERE, 'mapet', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for filename in filenames:
        src = osp.join(HERE, filename)
        if not osp.exists(src):
            continue
        tar = osp.join(mim_path, filename)
        if osp.isfile(tar) or osp.islink(tar):
            os.remove(tar)
        elif osp.isdir(tar):
            shutil.rmtree(tar)
        if mode == 'symlink':
            try:
                os.symlink(osp.relpath(src, osp.dirname(tar)), tar)
                continue
            except OSError:
                warnings.warn(f'Failed to symlink {src}; copying instead.')
        if osp.isfile(src):
            shutil.copyfile(src, tar)
        else:
            shutil.copytree(src, tar)


# Bounds: the lower bound of every requirement is the version the test suite
# passed with (requirements/constraints.txt pins all of them, and
# tests/test_packaging.py fails when the two disagree); the upper bound is
# the next major release, the next minor one for the onedl-* forks of the
# OpenMMLab stack (their minors have changed APIs). `make install` installs
# exactly the pinned versions; a user's own pip install gets anything within
# the bounds. torch is bounded, never pinned here: cluster users install
# their CUDA build first and pip keeps it. Its lower bound is therefore the
# oldest release with the APIs we use (weights_only loading by default and
# the `safe_globals` context, 2.6), not the tested 2.14.1: a bound at the
# tested version would make pip replace every older cluster build.
INSTALL_REQUIRES = [
    'onedl-mmengine>=0.10.12,<0.11',
    'onedl-mmcv>=2.3.6,<2.4',
    'onedl-mmpretrain>=1.3.6,<1.4',
    'onedl-mmsegmentation>=1.4.2,<1.5',
    'open_clip_torch>=3.3.0,<4',
    'setuptools>=81.0.0,<82',  # 81 is the last release shipping pkg_resources
    'torch>=2.6,<3',
    'torchvision>=0.21,<1',  # the torchvision of torch 2.6
    'numpy>=2.4.6,<3',
    'pillow>=13.0.0,<14',
    'matplotlib>=3.11.2,<4',
    'tqdm>=4.70.1,<5',
    'ftfy>=6.3.1,<7',
    'regex>=2026.11.19,<2027',  # calendar versions: the next year's
    'safetensors>=0.8.0,<1',  # weights export/import without pickle
]

EXTRAS_REQUIRE = {
    # `cpu` and `gpu` are mutually exclusive: both install the `faiss` module.
    # faiss-gpu is the same release line as the tested faiss-cpu.
    'cpu': ['faiss-cpu>=1.15.1,<2'],
    'gpu': ['faiss-gpu>=1.15.1,<2'],
    # openmim: `mim search/train mapet` is tested. 0.3.9 is the last release;
    # its openxlab dependency resolves to a release without pins (newer ones
    # pin setuptools~=60.2, which torch refuses). timm: the converter tests
    # load our exports into timm. PyYAML, opencv-python, mat4py and packaging
    # come with the OpenMMLab stack; tests import them directly.
    'tests': [
        'pytest>=9.2.0,<10',
        'pytest-timeout>=2.4.0,<3',
        'scikit-image>=0.26.0,<1',
        'scikit-learn>=1.9.1,<2',
        'openmim>=0.3.9,<0.4',
        'timm>=1.0.31,<2',
        'PyYAML>=6.0.4,<7',
        'opencv-python>=5.1.0.95,<6',
        'mat4py>=0.6.0,<1',
        'packaging>=26.4,<27',
    ],
}

if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mapet',
        version=get_version(),
        description='MaPeT: masked and permuted ViT pre-training with the '
        'k-CLIP visual tokenizer, on MMEngine / MMPretrain',
        long_description=open(osp.join(HERE, 'README.md'), encoding='utf-8').read()
        if osp.exists(osp.join(HERE, 'README.md')) else '',
        long_description_content_type='text/markdown',
        license='Apache License 2.0',
        # numpy, matplotlib, pillow, regex and scikit-* at their tested versions
        # need 3.11
        python_requires='>=3.11',
        packages=find_packages(exclude=('configs', 'tools', 'tests', 'projects', 'docs')),
        include_package_data=True,
        install_requires=INSTALL_REQUIRES,
        extras_require=EXTRAS_REQUIRE,
        zip_safe=False,
    )
