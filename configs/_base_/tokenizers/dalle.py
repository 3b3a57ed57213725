# DALL-E dVAE encoder, frozen (112 px -> 14 x 14 tokens, 8192 codes).
# Weights: mmpretrain's `dalle_encoder.pth` or the state dict of OpenAI's
# dall_e encoder (same key names).
tokenizer = dict(
    type='FrozenDALLE',
    vocab_size=8192,
    checkpoint='checkpoints/dalle_encoder.pth')
