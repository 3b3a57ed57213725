"""What ``import mapet`` changes in torch, mmengine, mmcv, mmpretrain, mmseg.

Run as a script in a fresh interpreter (tests/test_import_side_effects.py)::

    python import_side_effects.py list            # modules mapet pulls in
    python import_side_effects.py check MODULES.json [--inject NAME]

``list`` imports mapet and every ``mapet.*`` submodule and prints (JSON) the
third-party modules of the watched packages that are then loaded.

``check`` imports those modules first (without mapet), snapshots them, then
imports mapet and all its submodules and compares. The snapshot holds the
``id()`` of every attribute of every loaded watched module (public and
private), of every class attribute of the classes those modules define, the
contents (``id`` of each item) of their module- and class-level dicts, lists
and sets (so ``CheckpointLoader._schemes``, mmengine's file handlers and
``MODULE2PACKAGE`` are covered), the entries and children of every
``Registry``, ``torch.serialization.get_safe_globals()`` and
``warnings.filters``. Allowed differences: ``MODULE2PACKAGE['mapet']`` and,
in registries, new entries defined in ``mapet`` and new ``mapet``-scope
children. Everything else is printed (JSON list of strings) as a violation.

``--inject NAME[,NAME...]`` makes deliberate changes next to ``import mapet`` (see
:data:`INJECTIONS`), to show that the checker reports it.
"""
import importlib
import json
import pkgutil
import sys
import warnings

WATCHED = ('torch', 'mmengine', 'mmcv', 'mmpretrain', 'mmseg')
# Imported before the snapshot in both modes: the modules our configs and
# tools use (mmseg and mmpretrain register everything on import).
BASELINE = (
    'torch', 'torch.serialization', 'mmengine', 'mmengine.config',
    'mmengine.config.utils', 'mmengine.fileio', 'mmengine.registry',
    'mmengine.runner', 'mmengine.runner.checkpoint', 'mmengine.model',
    'mmengine.hooks', 'mmengine.optim', 'mmengine.logging', 'mmcv',
    'mmcv.transforms', 'mmcv.cnn', 'mmpretrain', 'mmpretrain.registry',
    'mmpretrain.models', 'mmpretrain.datasets', 'mmpretrain.engine',
    'mmpretrain.evaluation', 'mmpretrain.structures',
    'mmpretrain.visualization', 'mmseg', 'mmseg.registry', 'mmseg.models',
    'mmseg.datasets', 'mmseg.engine', 'mmseg.evaluation',
    'mmseg.structures', 'mmseg.visualization')


def _watched(name: str) -> bool:
    return name.split('.', 1)[0] in WATCHED


def import_mapet_everything() -> None:
    import mapet
    for info in pkgutil.walk_packages(mapet.__path__, 'mapet.'):
        importlib.import_module(info.name)


def _loaded_watched():
    return sorted(n for n, m in list(sys.modules.items())
                  if m is not None and _watched(n))


def _contents(value):
    """Shallow fingerprint of a mutable container, else None."""
    try:
        if isinstance(value, dict):
            return {repr(k)[:200]: id(v) for k, v in list(value.items())}
        if isinstance(value, list):
            return [id(v) for v in value]
        if isinstance(value, (set, frozenset)):
            return sorted(id(v) for v in value)
    except Exception:  # exotic mapping types
        return None
    return None


def _is_registry(value) -> bool:
    from mmengine.registry import Registry
    try:
        return isinstance(value, Registry)
    except Exception:
        return False


def snapshot() -> dict:
    """``{key: fingerprint}`` of everything listed in the module docstring."""
    import torch
    from mmengine.config.utils import MODULE2PACKAGE
    snap = {}
    registries = {}
    module2package_keys = []
    for name in _loaded_watched():
        module = sys.modules[name]
        try:
            items = list(vars(module).items())
        except TypeError:
            continue
        for attr, value in items:
            if attr == '__warningregistry__':
                continue
            key = f'{name}.{attr}'
            snap[key] = id(value)
            contents = _contents(value)
            if contents is not None:
                snap[key + ' (contents)'] = contents
                if value is MODULE2PACKAGE:  # and its aliases
                    module2package_keys.append(key + ' (contents)')
            if _is_registry(value):
                registries[id(value)] = value
            if isinstance(value, type) and \
                    getattr(value, '__module__', None) == name:
                for cattr, cvalue in list(vars(value).items()):
                    ckey = f'{key}.{cattr}'
                    snap[ckey] = id(cvalue)
                    contents = _contents(cvalue)
                    if contents is not None:
                        snap[ckey + ' (contents)'] = contents
    # Registries reachable from the watched modules, and their subtrees.
    todo = list(registries.values())
    seen = set()
    while todo:
        reg = todo.pop()
        if id(reg) in seen:
            continue
        seen.add(id(reg))
        label = f'Registry({reg.scope}:{reg.name})@{id(reg)}'
        snap[label + ' entries'] = {
            k: [id(v), getattr(v, '__module__', '')]
            for k, v in reg._module_dict.items()
        }
        snap[label + ' children'] = {
            k: [id(v), type(v).__module__]
            for k, v in reg._children.items()
        }
        todo.extend(reg._children.values())
    # A set inside torch: compare members, not the order it lists them in.
    snap['torch.serialization.get_safe_globals()'] = sorted(
        repr(g) for g in torch.serialization.get_safe_globals())
    snap['warnings.filters'] = [repr(f) for f in warnings.filters]
    snap[ALIASES] = sorted(module2package_keys)
    return snap


ALIASES = 'names of MODULE2PACKAGE'


def _allowed(key: str, before, after, aliases) -> bool:
    if key in aliases:
        added = {k: v for k, v in after.items() if k not in before}
        return all(after.get(k) == v for k, v in before.items()) and \
            set(added) == {"'mapet'"}
    if key.startswith('Registry(') and key.endswith(' entries'):
        return all(after.get(k) == v for k, v in before.items()) and all(
            v[1].split('.', 1)[0] == 'mapet' for k, v in after.items()
            if k not in before)
    if key.startswith('Registry(') and key.endswith(' children'):
        return all(after.get(k) == v for k, v in before.items()) and all(
            k == 'mapet' and v[1] == 'mapet.registry'
            for k, v in after.items() if k not in before)
    return False


def _describe(key, before, after) -> str:
    if isinstance(before, dict) and isinstance(after, dict):
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(k for k in set(before) & set(after)
                         if before[k] != after[k])
        parts = [f'{label} {items[:10]}' for label, items in
                 (('added', added), ('removed', removed),
                  ('changed', changed)) if items]
        return f'{key}: ' + '; '.join(parts)
    if isinstance(before, list) and isinstance(after, list):
        return (f'{key}: {len(before)} -> {len(after)} items; new: '
                f'{[a for a in after if a not in before][:5]}')
    return f'{key}: replaced (id {before} -> {after})'


def compare(before: dict, after: dict) -> list:
    """Violations: changed/removed keys and new keys of existing modules."""
    problems = []
    for key, value in before.items():
        if key not in after:
            problems.append(f'{key}: removed')
        elif after[key] != value and not _allowed(key, value, after[key],
                                                   before[ALIASES]):
            problems.append(_describe(key, value, after[key]))
    known_modules = {k.split(' ', 1)[0].rsplit('.', 1)[0]
                     for k in before
                     if not k.startswith('Registry(') and k != ALIASES}
    for key, value in after.items():
        if key in before:
            continue
        if key.startswith('Registry('):
            # A registry created by the import: only ours may appear.
            if key.startswith('Registry(mapet:'):
                continue
            problems.append(f'{key}: new registry {value}')
        elif key.rsplit('.', 1)[0] in known_modules:
            problems.append(f'{key}: new attribute')
    return problems


def _inject(name: str) -> None:
    """Deliberate side effects, to prove the checker reports them."""
    import torch
    from mmengine.config.utils import MODULE2PACKAGE
    from mmengine.runner.checkpoint import CheckpointLoader
    if name == 'torch_load':
        original = torch.load
        torch.load = lambda *a, **k: original(*a, **k)
    elif name == 'scheme':
        CheckpointLoader._schemes['evil://'] = lambda *a, **k: None
    elif name == 'safe_globals':
        torch.serialization.add_safe_globals([getattr])
    elif name == 'warnings':
        warnings.filterwarnings('ignore', category=FutureWarning)
    elif name == 'module2package':
        MODULE2PACKAGE['mmpretrain'] = 'mapet'
    elif name == 'class_attr':
        from mmengine.runner import Runner
        Runner.load_checkpoint = lambda self, *a, **k: None
    elif name == 'registry_override':
        from mmpretrain.registry import MODELS
        MODELS.register_module('ImageClassifier', force=True,
                               module=type('Fake', (), {}))
    else:
        raise ValueError(name)


INJECTIONS = ('torch_load', 'scheme', 'safe_globals', 'warnings',
              'module2package', 'class_attr', 'registry_override')


def main(argv) -> int:
    warnings.simplefilter('default')  # a fixed, known starting state
    if argv[0] == 'list':
        for name in BASELINE:
            importlib.import_module(name)
        import_mapet_everything()
        print(json.dumps(_loaded_watched()))
        return 0
    assert argv[0] == 'check', argv
    with open(argv[1]) as f:
        modules = json.load(f)
    failed_imports = []
    for name in list(BASELINE) + modules:
        try:
            importlib.import_module(name)
        except Exception as e:  # reported, not fatal
            failed_imports.append(f'{name}: {e!r}')
    before = snapshot()
    if len(argv) > 3 and argv[2] == '--inject':
        for name in argv[3].split(','):
            _inject(name)
    import_mapet_everything()
    after = snapshot()
    print(json.dumps({'violations': compare(before, after),
                      'failed_baseline_imports': failed_imports,
                      'watched_modules': len(modules),
                      'snapshot_keys': len(before)}))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
