from .verified_fsdp import VerifiedFSDPStrategy

__all__ = ['VerifiedFSDPStrategy']
