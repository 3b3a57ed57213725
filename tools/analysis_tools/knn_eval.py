"""Weighted k-NN evaluation of a frozen backbone (DINO's protocol).

The command line of :mod:`mapet.evaluation.knn_cli`
(``--help`` lists the flags).
"""
from mapet.evaluation.knn_cli import main

if __name__ == '__main__':
    main()
