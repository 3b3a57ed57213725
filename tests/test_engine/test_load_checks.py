"""Every weight load of ``MaPeTRunner`` is checked before it is applied.

``load_from`` / ``tools/test.py`` (``MaPeTRunner.load_checkpoint``),
``--resume`` (``MaPeTRunner.resume``: weights, optimizer state, schedulers)
and ``init_cfg=dict(type='Pretrained')`` (a ``PretrainedLoadCheckHook`` the
runner adds) refuse missing / unexpected / resized keys unless the config's
``load_check`` allows them, with :class:`CheckpointMismatchError` naming the
keys, before the first training step.
"""
import pytest
import torch
from mmengine.model import BaseModel
from torch import nn

from mapet.engine.runners import CheckpointMismatchError
from mapet.utils.checkpoint import atomic_save_checkpoint
from tiny_runner import TinyModel, tiny_runner  # tests/helpers


class TwoLayers(BaseModel):
    """``a`` (4->8) then ``b`` (8->4); ``swapped`` registers ``b`` first.

    Same keys and shapes either way, but the optimizer sees the parameters
    in another order: the refactoring that made Adam crash on resume.
    """

    def __init__(self, swapped: bool = False):
        super().__init__()
        if swapped:
            self.b = nn.Linear(8, 4)
            self.a = nn.Linear(4, 8)
        else:
            self.a = nn.Linear(4, 8)
            self.b = nn.Linear(8, 4)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.b(self.a(inputs))
        if mode == 'loss':
            return dict(loss=out.pow(2).mean())
        return out


def _trained(tmp_path, **kwargs) -> str:
    runner = tiny_runner(tmp_path / 'src', max_iters=2, **kwargs)
    runner.train()
    return str(tmp_path / 'src' / 'iter_2.pth')


def test_load_from_other_architecture_is_refused(tmp_path):
    ckpt = _trained(tmp_path, size=8)
    runner = tiny_runner(tmp_path / 'dst', load_from=ckpt)
    with pytest.raises(CheckpointMismatchError) as e:
        runner.train()
    msg = str(e.value)
    assert f'Checkpoint {ckpt} (load_from) does not fit the model' in msg
    assert 'fc.weight: checkpoint [8, 8] vs model [4, 4]' in msg
    assert 'load_check = dict(' in msg
    assert runner.iter == 0  # before the first step


def test_load_from_unexpected_and_missing_keys(tmp_path):
    state = TinyModel(4).state_dict()
    extra = dict(state, **{'head.weight': torch.zeros(2)})
    atomic_save_checkpoint(dict(state_dict=extra), str(tmp_path / 'x.pth'))
    runner = tiny_runner(tmp_path / 'a', load_from=str(tmp_path / 'x.pth'))
    with pytest.raises(CheckpointMismatchError,
                       match=r"1 checkpoint keys the model does not have: "
                       r"\['head.weight'\]"):
        runner.train()

    missing = {k: v for k, v in state.items() if k != 'fc.bias'}
    atomic_save_checkpoint(dict(state_dict=missing), str(tmp_path / 'y.pth'))
    runner = tiny_runner(tmp_path / 'b', load_from=str(tmp_path / 'y.pth'))
    with pytest.raises(CheckpointMismatchError,
                       match=r"1 model keys missing from the checkpoint: "
                       r"\['fc.bias'\]"):
        runner.train()

    # Allowed by the config: loads, and the report is logged.
    runner = tiny_runner(
        tmp_path / 'c', load_from=str(tmp_path / 'y.pth'),
        cfg=dict(load_check=dict(allowed_missing=['fc.bias'])))
    runner.train()
    assert runner.iter == 4


def test_load_check_unknown_key_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"load_check has unknown keys "
                       r"\['allow_missing'\]"):
        tiny_runner(tmp_path, cfg=dict(load_check=dict(allow_missing=['x'])))


def test_tools_test_path_refuses_wrong_checkpoint(tmp_path):
    """tools/test.py sets load_from; the runner's load_checkpoint checks."""
    ckpt = _trained(tmp_path, size=8)
    runner = tiny_runner(tmp_path / 'dst')
    with pytest.raises(CheckpointMismatchError, match='fc.bias: checkpoint '
                       r'\[8\] vs model \[4\]'):
        runner.load_checkpoint(ckpt)


def test_resume_other_architecture_fails_before_first_step(tmp_path):
    ckpt = _trained(tmp_path, size=8)
    runner = tiny_runner(tmp_path / 'dst', max_iters=4, resume=True,
                         load_from=ckpt)
    with pytest.raises(CheckpointMismatchError,
                       match=f'--resume checkpoint {ckpt} does not fit'):
        runner.train()
    assert runner.iter == 0


def test_resume_reordered_parameters_fails_before_adam(tmp_path):
    """Same keys and shapes, parameters in another order: the weights load,
    but Adam's state would go to the wrong tensors (and crash inside
    Adam at the first step). Refused naming the state."""
    adam = dict(optimizer=dict(type='Adam', lr=0.01))
    ckpt = _trained(tmp_path, model=TwoLayers(), optim_wrapper=adam)
    runner = tiny_runner(tmp_path / 'dst', model=TwoLayers(swapped=True),
                         optim_wrapper=adam, resume=True, load_from=ckpt)
    with pytest.raises(CheckpointMismatchError) as e:
        runner.train()
    msg = str(e.value)
    assert 'the optimizer state does not fit' in msg
    assert "state 'exp_avg' of parameter 0 (group 0) has shape [8, 4], " \
        'the parameter [4, 8]' in msg
    assert runner.iter == 0


def test_resume_other_param_groups_is_refused(tmp_path):
    ckpt = _trained(tmp_path, optim_wrapper=dict(
        optimizer=dict(type='SGD', lr=0.1),
        paramwise_cfg=dict(custom_keys={'fc.bias': dict(lr_mult=0.1)})))
    runner = tiny_runner(tmp_path / 'dst', resume=True, load_from=ckpt)
    with pytest.raises(CheckpointMismatchError,
                       match='2 parameter groups in the checkpoint, 1 in the '
                       'config'):
        runner.train()


def test_resume_same_config_still_works(tmp_path):
    ckpt = _trained(tmp_path)
    runner = tiny_runner(tmp_path / 'dst', resume=True, load_from=ckpt)
    runner.train()
    assert runner.iter == 4


def test_pretrained_init_is_checked_without_a_hook_in_the_config(tmp_path):
    state = TinyModel(4).state_dict()
    partial = {k: v for k, v in state.items() if k != 'fc.bias'}
    atomic_save_checkpoint(dict(state_dict=partial), str(tmp_path / 'p.pth'))
    model = TinyModel(4, init_cfg=dict(type='Pretrained',
                                       checkpoint=str(tmp_path / 'p.pth')))
    runner = tiny_runner(tmp_path / 'w', model=model)
    with pytest.raises(RuntimeError, match=r"keys missing from the "
                       r"checkpoint: \['fc.bias'\]"):
        runner.train()
