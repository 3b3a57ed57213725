# BEiT v2 VQ-KD tokenizer, frozen (224 px -> 14 x 14 tokens, 8192 codes).
# Weights: mmpretrain's released target-generator file `vqkd_encoder.pth`
# (download it yourself; nothing here downloads).
tokenizer = dict(
    type='FrozenVQKD',
    num_embed=8192,
    embed_dims=32,
    checkpoint='checkpoints/vqkd_encoder.pth')
