"""Strip a pre-training checkpoint down to its backbone weights.

The command line of :mod:`mapet.converters.strip_pretrain_checkpoint`
(``--help`` lists the flags; that module documents the formats).
"""
from mapet.converters.strip_pretrain_checkpoint import main

if __name__ == '__main__':
    main()
