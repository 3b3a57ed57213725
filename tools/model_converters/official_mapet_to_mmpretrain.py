"""Convert an official MaPeT checkpoint (fine-tuned or pre-training).

The command line of :mod:`mapet.converters.official_mapet_to_mmpretrain`
(``--help`` lists the flags; that module documents the formats).
"""
from mapet.converters.official_mapet_to_mmpretrain import main

if __name__ == '__main__':
    main()
