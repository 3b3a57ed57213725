"""Objectives study: MaPeT / PIM / MIM / BEiT / random init, k-NN + linear probe.

The command line of :mod:`mapet.evaluation.study_cli`
(``--help`` lists the flags).
"""
from mapet.evaluation.study_cli import main

if __name__ == '__main__':
    main()
