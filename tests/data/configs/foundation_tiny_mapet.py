# Tiny MaPeT pre-training on the demo dataset for the distributed
# equivalence test (1 process x 2b == 2 processes x b). Random colour jitter
# and permutations stay on: ExactResumeHook draws them from
# (seed, epoch, sample_idx), so a sample gets the same augmentation and
# permutation whichever rank loads it. Drop path is off (it draws per rank).
_base_ = './_tiny_mapet_base.py'

custom_imports = dict(
    imports=['mapet', 'core_tiny_tokenizer', 'foundation_hooks'])

custom_hooks = [
    dict(type='ExactResumeHook'),
    dict(type='FoundationLossRecorderHook'),
]
env_cfg = dict(dist_cfg=dict(backend='nccl'))
