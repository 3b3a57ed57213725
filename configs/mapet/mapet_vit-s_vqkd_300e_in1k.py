# MaPeT ViT-S/16 with BEiT v2 VQ-KD tokens (8192 codes, 14x14 grid): only
# the token store differs from the k-CLIP config.
_base_ = './mapet_vit-s_300e_in1k.py'
token_store = 'data/imagenet/visual_tokens/vqkd_8192/'
train_dataloader = dict(
    dataset=dict(pipeline=[
        dict(t, store=token_store, codebook=_base_.vqkd_codebook_sha256)
        if t['type'] == 'LoadVisualTokens' else t
        for t in _base_.train_dataloader.dataset.pipeline
    ]))
