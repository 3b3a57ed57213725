"""Make ``_base_ = 'mapet::<folder>/<config>.py'`` work from any folder.

MMEngine resolves ``pkg::path`` bases only for packages listed in its
``MODULE2PACKAGE`` table, through ``<pkg>/.mim/`` (which ``setup.py``'s
``add_mim_extension`` fills with ``configs``, ``tools`` and
``model-index.yml``). :func:`register_config_package` (run by
``import mapet``) therefore:

1. adds ``mapet`` to that table;
2. resolves ``mapet::`` bases **without** the ``_scope_='mapet'`` that
   mmengine would stamp on every ``type=`` dict of the base. mapet has no
   registry scope of its own (its components live in mmpretrain's
   registries, see ``mapet/registry.py``), and its configs are mmpretrain or
   mmseg configs declaring their ``default_scope``: with ``_scope_='mapet'``
   mmengine would look the types up in a registry that does not exist and
   fail (``ImageClassifier is not in the mmengine::model registry``). So a
   ``mapet::`` base behaves exactly like a local ``../_base_/...`` base;
3. falls back to ``.mim/configs/<path>`` when the installation has no
   ``model-index.yml`` (mmengine would raise ``FileNotFoundError``).

``import mapet`` must run before ``Config.fromfile`` parses such a config:
``tools/train.py`` and ``tools/test.py`` import it first; in your own
scripts, ``import mapet`` before loading configs.
"""
import os.path as osp
from typing import Optional, Tuple

from mmengine.config import Config
from mmengine.config import utils as cfg_utils

PACKAGE = 'mapet'
_PATCHED = False


def _mapet_cfg_path(cfg_path: str) -> str:
    """Absolute path of ``mapet::<rel>`` (model-index first, then base)."""
    from mmengine.utils import get_installed_path
    _, rel = cfg_utils._get_package_and_cfg_path(cfg_path)
    package_path = get_installed_path(PACKAGE)
    if osp.isfile(osp.join(package_path, '.mim', 'model-index.yml')):
        try:
            return cfg_utils._get_external_cfg_path(package_path, rel)
        except ValueError:  # not a model in the index: a base config
            pass
    mim_path = osp.join(package_path, '.mim', 'configs')
    if not osp.isdir(mim_path):
        raise FileNotFoundError(
            f'{mim_path} does not exist: mapet was installed without its '
            'configs. Reinstall it with `pip install -e .` (or `make '
            'install`) from the repository root.')
    return cfg_utils._get_external_cfg_base_path(package_path, rel)


def register_config_package() -> None:
    """Let mmengine configs inherit ``mapet::`` bases (idempotent)."""
    global _PATCHED
    cfg_utils.MODULE2PACKAGE.setdefault(PACKAGE, PACKAGE)
    if _PATCHED:
        return
    original = Config._get_cfg_path

    def _get_cfg_path(cfg_path: str,
                      filename: str) -> Tuple[str, Optional[str]]:
        if cfg_path.partition('::')[0] == PACKAGE and '::' in cfg_path:
            return _mapet_cfg_path(cfg_path), None
        return original(cfg_path, filename)

    Config._get_cfg_path = staticmethod(_get_cfg_path)
    _PATCHED = True
