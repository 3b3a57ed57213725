# k-CLIP tokenizer (paper 4.2): CLIP RN50x64 layer4 at 448 px -> 14 x 14
# tokens, K = 8192. Fit the codebook first with
# tools/tokenizers/fit_kclip_codebook.py (writes the file named here).
tokenizer = dict(
    type='KClipTokenizer',
    clip_model='RN50x64',
    pretrained='openai',
    codebook='work_dirs/kclip/kclip_rn50x64_k8192.npz',
    normalize=False,
    input_size=448)
