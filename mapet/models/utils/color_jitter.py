"""Colour jitter on a batch of tensors, pixel-identical to mmpretrain's.

MaPeT's only pre-training augmentation is ``ColorJitter(0.4, 0.4, 0.4)``.
On the CPU it costs a data-loader worker more than everything else of the
pre-cropped pipeline together (``docs/benchmarks.md``). Here it runs on the
device, batched: ``DeferredColorJitter`` draws each sample's factors and
order in the pipeline (the same draws as ``ColorJitter``), and
``ColorJitterDataPreprocessor`` calls :func:`color_jitter_batch`.

The result equals mmpretrain's ``ColorJitter`` (pillow backend, its default)
pixel for pixel, because every step is Pillow's ``ImageEnhance`` done with
the same arithmetic:

* each enhancement is ``Image.blend(degenerate, image, factor)``: per
  channel ``uint8(clip(d + f * (x - d), 0, 255))`` in float32, truncated;
* brightness blends with black, saturation with the grey image (Pillow's
  ITU-R 601-2 integer luma, replicated), contrast with a constant grey, the
  rounded mean of that luma;
* the four steps run in each sample's own random order, each on the output
  of the previous one.

``f * (x - d)`` and ``+ d`` are separate tensor operations so that no
fused multiply-add rounds differently from Pillow's two float32 roundings;
for the same reason ``torch.compile`` (whose generated kernels may fuse
them) is kept out of this function. Cost: three steps (hue is the identity
here) of about a dozen elementwise passes over the float32 batch each,
memory-bound; ``tools/analysis_tools/gpu_benchmark.py`` times it on a GPU.
"""
import torch

__all__ = ['JITTER_PARAMS', 'color_jitter_batch']

#: Layout of one sample's parameters (``DeferredColorJitter`` writes it):
#: the order in which the four operations run (a permutation of 0..3:
#: brightness, contrast, saturation, hue), then the brightness, contrast and
#: saturation factors (1.0 = unchanged). Hue is not supported on the device.
JITTER_PARAMS = 7
_BRIGHTNESS, _CONTRAST, _SATURATION = range(3)

# Pillow's RGB -> L: (R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16.
_LUMA = (19595., 38470., 7471.)
_HUE = 3  # position of hue in the order; the identity here


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    """Pillow's integer grey of (B, 3, H, W) float32 RGB, as (B, 1, H, W).

    In float32 and still exact, whatever order the sum runs in: the
    products and every partial sum are integers below
    255 * 65536 + 0x8000 < 2**24, and dividing by 65536 is exact.
    """
    weights = rgb.new_tensor(_LUMA).view(1, 3, 1, 1)
    grey = (rgb * weights).sum(dim=1, keepdim=True)
    return grey.add_(0x8000).div_(65536).floor_()


def _steps(order: torch.Tensor) -> torch.Tensor:
    """Each sample's order without hue: (B, 3) operation ids 0..2.

    Hue (factor 1, the identity) may sit anywhere in a sample's order;
    dropping it leaves the result unchanged and saves a pass.
    """
    # Move hue last (a stable sort key, no host sync), keep the first 3.
    position = torch.arange(4, device=order.device).expand_as(order)
    key = position + 4 * (order == _HUE).to(position.dtype)
    return order.gather(1, key.argsort(dim=1))[:, :3]


@torch.compiler.disable  # exact float32 rounding: no fused kernels
def color_jitter_batch(rgb: torch.Tensor,
                       params: torch.Tensor) -> torch.Tensor:
    """Jitter integer-valued RGB images with per-sample parameters.

    Args:
        rgb (torch.Tensor): (B, 3, H, W) images with values 0..255, RGB
            channel order, any floating or uint8 dtype.
        params (torch.Tensor): (B, :data:`JITTER_PARAMS`) from
            ``DeferredColorJitter``: order, then the three factors.

    Returns:
        torch.Tensor: float32 (B, 3, H, W), integer-valued, 0..255.
    """
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ValueError('color_jitter_batch expects (B, 3, H, W) RGB '
                         f'images, got shape {tuple(rgb.shape)}')
    if params.shape != (rgb.shape[0], JITTER_PARAMS):
        raise ValueError(
            f'color_jitter_batch expects ({rgb.shape[0]}, {JITTER_PARAMS}) '
            f'parameters, got {tuple(params.shape)}')
    # A new float32 tensor, worked on in place (never the caller's).
    x = rgb.clone() if rgb.dtype == torch.float32 else rgb.float()
    steps = _steps(params[:, :4].to(torch.long))
    # Python floats reach Pillow's C blend as float32: round the same way.
    factors = params[:, 4:].to(torch.float32)
    pixels = x.shape[-2] * x.shape[-1]
    for step in range(3):
        op = steps[:, step:step + 1]
        factor = factors.gather(1, op).view(-1, 1, 1, 1)
        is_contrast = (op == _CONTRAST).to(x.dtype).view(-1, 1, 1, 1)
        is_saturation = (op == _SATURATION).to(x.dtype).view(-1, 1, 1, 1)
        grey = _luma(x)
        # ImageStat's float64 mean of the luma, rounded half up to an int.
        mean = torch.floor(
            grey.sum(dim=(1, 2, 3), dtype=torch.float64) / pixels + 0.5)
        # Black (brightness), the mean grey (contrast) or the grey image
        # (saturation); products with 0/1 and their sum are exact.
        degenerate = grey.mul_(is_saturation).add_(
            mean.to(x.dtype).view(-1, 1, 1, 1) * is_contrast)
        x = x.sub_(degenerate).mul_(factor).add_(degenerate)
        x = x.clamp_(0, 255).floor_()
    return x
