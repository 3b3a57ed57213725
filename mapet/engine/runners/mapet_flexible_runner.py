"""``MaPeTFlexibleRunner``: ``FlexibleRunner`` (FSDP) with our guarantees.

The ViT-L configs shard with mmengine's ``FlexibleRunner`` and
``VerifiedFSDPStrategy`` (``configs/mapet_large/``). This subclass gives
them what ``MaPeTRunner`` gives the other configs, as far as a strategy
that gathers the state dict on rank 0 allows:

* checkpoints written to a temporary file, renamed into place and given a
  ``.sha256`` sidecar (every rank gathers, rank 0 writes); data-only
  message hub; stale temporary files removed when a run starts;
* loads (``load_from``, ``--resume``) verified, ``weights_only``, and
  compared with the model's keys and shapes (``VerifiedFSDPStrategy``,
  which this runner requires), with the config's ``load_check``;
* ``--resume auto`` picks the newest checkpoint that matches its sidecar;
* empty datasets and pickled annotations refused when built; targets and
  deferred colour jitter checked against the built model before training.

Not covered (use ``MaPeTRunner`` for them): the optimizer-state and
scheduler-count checks before ``--resume`` (FSDP re-shards the optimizer
state itself and raises on a mismatch), and vetting ``Pretrained`` init
files (no sharded config uses them).
"""
from mmengine.registry import STRATEGIES
from mmengine.runner import BaseLoop, FlexibleRunner
from mmpretrain.registry import RUNNERS

from mapet.engine.strategies.verified_fsdp import VerifiedFSDPStrategy
from .safe_run_mixin import SafeRunMixin

__all__ = ['MaPeTFlexibleRunner']


@RUNNERS.register_module()
class MaPeTFlexibleRunner(SafeRunMixin, FlexibleRunner):
    """mmengine ``FlexibleRunner`` with crash-safe saving and checked loads.

    Same arguments as :class:`mmengine.runner.FlexibleRunner`; the strategy
    must be a :class:`~mapet.engine.strategies.VerifiedFSDPStrategy`.
    """

    #: SafeRunMixin.save_checkpoint: every rank gathers, rank 0 writes.
    collective_save = True

    def __init__(self, *args, strategy=None, **kwargs) -> None:
        # Checked before mmengine builds anything (work dir, logger, scope).
        if isinstance(strategy, dict):
            kind = strategy.get('type')
            cls = STRATEGIES.get(kind) if isinstance(kind, str) else kind
        else:
            cls = type(strategy)
        if not (isinstance(cls, type)
                and issubclass(cls, VerifiedFSDPStrategy)):
            name = 'None (mmengine picks its default)' if strategy is None \
                else getattr(cls, '__name__', repr(strategy))
            raise ValueError(
                f'MaPeTFlexibleRunner got strategy {name}, whose loads it '
                "cannot verify; set strategy = dict(type='mapet.engine."
                "strategies.VerifiedFSDPStrategy', ...) or runner_type="
                "'FlexibleRunner' (without these guarantees).")
        super().__init__(*args, strategy=strategy, **kwargs)
        self.strategy.load_check = self._load_check_cfg()

    def load_or_resume(self) -> None:
        """Check the inputs against the built model, then load or resume;
        ``--resume auto`` uses the newest intact checkpoint."""
        # Training builds its loop before the strategy builds the model,
        # so the checks run here (val/test have no built train loop).
        if isinstance(self._train_loop, BaseLoop):
            self.check_training_inputs(self._train_loop.dataloader.dataset)
        return super().load_or_resume()
