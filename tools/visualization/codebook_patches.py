"""PNG grid of the image patches assigned to chosen visual tokens.

The command line of :mod:`mapet.visualization.codebook_patches`
(``--help`` lists the flags).
"""
from mapet.visualization.codebook_patches import main

if __name__ == '__main__':
    main()
