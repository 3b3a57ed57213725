# ImageNet-1k as DALL-E tokens (store written with
# configs/_base_/tokenizers/dalle.py): the k-CLIP token data with another store.
_base_ = './imagenet_tokens_kclip.py'

token_store = 'data/tokens/in1k_dalle'
train_pipeline = [
    dict(_base_.train_pipeline[0], store=token_store + '/train',
         codebook=None),  # DALL-E has no codebook to pin
    *_base_.train_pipeline[1:],
]
val_pipeline = [
    dict(_base_.val_pipeline[0], store=token_store + '/val',
         codebook=None),  # DALL-E has no codebook to pin
    *_base_.val_pipeline[1:],
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
