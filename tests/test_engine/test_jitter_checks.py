"""The runner refuses deferred colour jitter that is drawn but not applied."""
from types import SimpleNamespace

import pytest
from mmengine.dataset import Compose
from mmpretrain.registry import MODELS, TRANSFORMS

import mapet  # noqa: F401  (registers)
from mapet.engine.runners import JitterConfigError
from mapet.engine.runners.jitter_checks import check_deferred_jitter

JITTER = dict(type='DeferredColorJitter', brightness=0.4)
PACK = dict(type='PackInputs', algorithm_keys=['color_jitter'])


def _model(preprocessor: str):
    return SimpleNamespace(
        data_preprocessor=MODELS.build(dict(type=preprocessor)))


def _dataset(*transforms):
    return SimpleNamespace(pipeline=Compose(
        [TRANSFORMS.build(t) for t in transforms]))


def test_matching_halves_pass():
    check_deferred_jitter(_model('ColorJitterDataPreprocessor'),
                          _dataset(JITTER, PACK))
    check_deferred_jitter(_model('SelfSupDataPreprocessor'),
                          _dataset(dict(type='ColorJitter', brightness=0.4),
                                   dict(type='PackInputs')))
    # Also inside PerSampleRNG and dataset wrappers.
    wrapped = SimpleNamespace(pipeline=Compose([TRANSFORMS.build(dict(
        type='PerSampleRNG', transforms=[JITTER, PACK],
        require_state=False))]))
    check_deferred_jitter(_model('ColorJitterDataPreprocessor'),
                          SimpleNamespace(datasets=[wrapped]))


@pytest.mark.parametrize('preprocessor, transforms, match', [
    ('SelfSupDataPreprocessor', (JITTER, PACK),
     'data preprocessor is SelfSupDataPreprocessor, which would never apply '
     "it. Set model.data_preprocessor = dict\\(type='ColorJitterData"),
    ('ColorJitterDataPreprocessor', (JITTER, dict(type='PackInputs')),
     "no PackInputs packs its 'color_jitter'"),
    ('ColorJitterDataPreprocessor', (dict(type='PackInputs'), ),
     'pipeline has no DeferredColorJitter to draw the jitter'),
])
def test_a_missing_half_is_refused(preprocessor, transforms, match):
    with pytest.raises(JitterConfigError, match=match):
        check_deferred_jitter(_model(preprocessor), _dataset(*transforms))
