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


INSTALL_REQUIRES = [
    'onedl-mmengine',
    'onedl-mmcv',
    'onedl-mmpretrain',
    'onedl-mmsegmentation',
    'open_clip_torch',
    'setuptools<82',  # 81 is the last release shipping pkg_resources
    'torch',  # not pinned: cluster users bring their own CUDA build
    'torchvision',
    'numpy',
    'matplotlib',
    'tqdm',
    'ftfy',
    'regex',
]

EXTRAS_REQUIRE = {
    # `cpu` and `gpu` are mutually exclusive: both install the `faiss` module.
    'cpu': ['faiss-cpu'],
    'gpu': ['faiss-gpu'],
    # openmim: `mim search/train mapet` is tested. 0.3.9 is the last release;
    # its openxlab dependency resolves to a release without pins (newer ones
    # pin setuptools~=60.2, which torch refuses).
    'tests': [
        'pytest', 'pytest-timeout', 'scikit-image', 'scikit-learn',
        'openmim>=0.3.9,<0.4'
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
        python_requires='>=3.9',
        packages=find_packages(exclude=('configs', 'tools', 'tests', 'projects', 'docs')),
        include_package_data=True,
        install_requires=INSTALL_REQUIRES,
        extras_require=EXTRAS_REQUIRE,
        zip_safe=False,
    )
