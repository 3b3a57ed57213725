"""Pre-cropped image shards written beside a token store.

MaPeT pre-trains on one fixed crop per image (resize the short side to 224,
bicubic, Pillow; centre crop 224), the crop the visual tokens are aligned
with. Decoding a JPEG and resizing it costs about 12 ms of CPU per
ImageNet-sized image on every epoch, while the crop never changes: these
shards hold it once, as uint8 pixels, so a data-loader worker only copies
150 KB per image (see docs/benchmarks.md, "Input pipeline").

Layout of a shard directory::

    manifest.json   written last; "complete": true marks finished shards
                    (format, crop recipe, decoder, channel order, number of
                    images, chunk size, sha256 of every array and of every
                    chunk of crops.npy, index sha256 of the token store)
    crops.npy       uint8 (num_images, S, S, 3), the crops in the channel
                    order of the pipeline (BGR, as LoadImageForTokens gives
                    it), opened memory-mapped (shared page cache)
    shapes.npy      int32 (num_images, 4): original height, width, resized
                    width, height (what ResizeEdge records)
    index.npy       byte copy of the token store's index.npy: row i of
                    crops.npy is row i of the store's tokens.npy
    parts/          only while writing: job.json, crops.npy.partial (the
                    array being filled in place) and chunk_XXXXXX.json
                    markers (written atomically once a chunk is flushed), so
                    an interrupted run resumes where it stopped

The crops are computed by the pipeline's own transforms
(``LoadImageForTokens``, ``ResizeEdge(backend='pillow',
interpolation='bicubic')``, ``CenterCrop``), so they equal the normal
pipeline's pixels bit for bit. No paths, timestamps or host names are
stored: identical inputs give identical bytes.

Size: 150,528 bytes per image at 224 px, about 193 GB for ImageNet-1k train
(the JPEGs take about 140 GB).
"""
import hashlib
import json
import os
import os.path as osp
import shutil
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from mapet.datasets.image_decode import DECODER_ID
from mapet.datasets.token_store import (INDEX_NAME, TokenStore,
                                        TokenStoreError, num_chunks,
                                        record_job)
from mapet.utils.atomic import (atomic_write, atomic_write_text,
                                publish_atomically, sha256_file)

PathLike = Union[str, os.PathLike]

SHARD_FORMAT = 'mapet-crop-shards-v1'
MANIFEST_NAME = 'manifest.json'
CROPS_NAME = 'crops.npy'
SHAPES_NAME = 'shapes.npy'
PARTS_DIR = 'parts'
JOB_NAME = 'job.json'
PARTIAL_NAME = 'crops.npy.partial'
#: The fixed crop, as the pipelines spell it.
CROP_RECIPE = 'resize-short-edge-pillow-bicubic+center-crop'
CHANNEL_ORDER = 'bgr'
DEFAULT_CHUNK_SIZE = 256
_READ = 1 << 24

__all__ = [
    'CropShardError', 'CropShards', 'CropFunction', 'write_crop_shards',
    'SHARD_FORMAT', 'CROP_RECIPE'
]


class CropShardError(ValueError):
    """Crop shards are missing, incomplete, corrupt, or do not match the
    token store / pipeline they are used with."""


class CropFunction:
    """The pipeline's decode + resize + centre crop of one image.

    Built from the same transforms the training config uses, so the crop is
    the normal pipeline's ``img`` after ``CenterCrop`` (BGR uint8).

    Args:
        crop_size (int): Output side. Defaults to 224.
    """

    def __init__(self, crop_size: int = 224) -> None:
        from mmpretrain.registry import TRANSFORMS

        import mapet.datasets.transforms  # noqa: F401  (registers)
        self.crop_size = int(crop_size)
        self.transforms = [
            TRANSFORMS.build(dict(type='LoadImageForTokens')),
            TRANSFORMS.build(
                dict(
                    type='ResizeEdge',
                    scale=self.crop_size,
                    edge='short',
                    backend='pillow',
                    interpolation='bicubic')),
            TRANSFORMS.build(dict(type='CenterCrop',
                                  crop_size=self.crop_size)),
        ]

    def __call__(self, path: str) -> Tuple[np.ndarray, Tuple[int, ...]]:
        """Return (crop (S, S, 3) uint8, (ori_h, ori_w, resized_w,
        resized_h))."""
        results = dict(img_path=path)
        results = self.transforms[0](results)
        ori_h, ori_w = results['ori_shape']
        results = self.transforms[1](results)
        resized_w, resized_h = results['scale']
        results = self.transforms[2](results)
        img = results['img']
        s = self.crop_size
        if img.shape != (s, s, 3) or img.dtype != np.uint8:
            raise CropShardError(
                f'{path}: crop is {img.dtype} {img.shape}, expected uint8 '
                f'({s}, {s}, 3)')
        return img, (int(ori_h), int(ori_w), int(resized_w), int(resized_h))


def _marker_path(root: str, chunk: int) -> str:
    return osp.join(root, PARTS_DIR, f'chunk_{chunk:06d}.json')


def _read_marker(root: str, chunk: int, rows: int) -> Optional[Dict]:
    path = _marker_path(root, chunk)
    if not osp.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            marker = json.load(f)
    except (ValueError, OSError):
        return None
    shapes = marker.get('shapes') if isinstance(marker, dict) else None
    if not (isinstance(shapes, list) and len(shapes) == rows
            and isinstance(marker.get('sha256'), str)):
        return None
    return marker


def _chunk_rows(n: int, chunk_size: int, chunk: int) -> Tuple[int, int]:
    start = chunk * chunk_size
    return start, min(n, start + chunk_size)


def _init_worker(crop_size: int) -> None:
    global _WORKER_CROP
    _WORKER_CROP = CropFunction(crop_size)


def _worker_crop(path: str):
    return _WORKER_CROP(path)


def write_crop_shards(store: PathLike,
                      data_root: PathLike,
                      out: PathLike,
                      crop_size: int = 224,
                      chunk_size: int = DEFAULT_CHUNK_SIZE,
                      workers: int = 0,
                      max_chunks: Optional[int] = None,
                      progress: Optional[Callable[[int, int], None]] = None
                      ) -> Optional[Dict]:
    """Write (or resume writing) crop shards in the token store's order.

    Args:
        store (str | PathLike): A finished token store; its ``index.npy``
            gives the images and their order.
        data_root (str | PathLike): Root the store's keys are relative to.
        out (str | PathLike): Shard directory (beside the store).
        crop_size (int): Crop side. Defaults to 224.
        chunk_size (int): Images per resumable chunk. Defaults to 256.
        workers (int): Decoding processes (0: in this process).
        max_chunks (int, optional): Stop after writing this many new chunks
            (for tests of resumption); the shards stay unfinished.
        progress (callable, optional): Called with (chunks done, chunks).

    Returns:
        dict | None: The manifest written, or None when stopped early by
        ``max_chunks``.

    Raises:
        CropShardError: ``out`` holds finished shards or parts of another
            job; an image cannot be cropped; a chunk fails verification.
    """
    out, data_root = os.fspath(out), os.fspath(data_root)
    if chunk_size < 1:
        raise CropShardError(f'chunk_size must be >= 1, got {chunk_size}')
    try:
        token_store = TokenStore(store)
    except TokenStoreError as e:
        raise CropShardError(f'cannot read the image list: {e}') from None
    index_path = osp.join(token_store.root, INDEX_NAME)
    index_sha = sha256_file(index_path)
    if index_sha != token_store.manifest.get('index_sha256'):
        raise CropShardError(
            f'{index_path} does not match its manifest (sha256 {index_sha})'
            '; the token store is corrupt')
    relpaths = list(token_store.relpaths())
    n, s = len(relpaths), int(crop_size)
    if osp.isfile(osp.join(out, MANIFEST_NAME)):
        raise CropShardError(
            f'{out} already holds finished crop shards; choose another '
            'directory or delete it to rewrite them')
    os.makedirs(osp.join(out, PARTS_DIR), exist_ok=True)
    job = dict(
        format=SHARD_FORMAT,
        store_index_sha256=index_sha,
        num_images=n,
        crop_size=s,
        crop=CROP_RECIPE,
        decoder=DECODER_ID,
        channel_order=CHANNEL_ORDER,
        chunk_size=int(chunk_size))
    diff = record_job(osp.join(out, PARTS_DIR, JOB_NAME), job)
    if diff:
        raise CropShardError(
            f'{out}/{PARTS_DIR} holds parts of another job (differs in: '
            f'{", ".join(diff)}); delete {PARTS_DIR}/ or use another '
            'directory')
    partial = osp.join(out, PARTS_DIR, PARTIAL_NAME)
    shape = (n, s, s, 3)
    crops = None
    if osp.isfile(partial):
        try:
            crops = np.load(partial, mmap_mode='r+', allow_pickle=False)
            if crops.shape != shape or crops.dtype != np.uint8:
                crops = None
        except (ValueError, OSError, EOFError):
            crops = None
        if crops is None:  # unusable: start over
            shutil.rmtree(osp.join(out, PARTS_DIR))
            os.makedirs(osp.join(out, PARTS_DIR))
            record_job(osp.join(out, PARTS_DIR, JOB_NAME), job)
    if crops is None:
        crops = np.lib.format.open_memmap(
            partial, mode='w+', dtype=np.uint8, shape=shape)
    total = num_chunks(n, chunk_size)
    todo = [
        c for c in range(total)
        if _read_marker(out, c, _chunk_rows(n, chunk_size, c)[1] -
                        _chunk_rows(n, chunk_size, c)[0]) is None
    ]
    pool = None
    if workers > 0 and todo:
        import multiprocessing as mp
        pool = mp.get_context('spawn').Pool(
            workers, initializer=_init_worker, initargs=(s, ))
        crop_many = lambda paths: pool.map(_worker_crop, paths, chunksize=8)  # noqa: E731,E501
    else:
        fn = CropFunction(s)
        crop_many = lambda paths: [fn(p) for p in paths]  # noqa: E731
    written = 0
    try:
        for c in todo:
            if max_chunks is not None and written >= max_chunks:
                return None
            start, stop = _chunk_rows(n, chunk_size, c)
            results = crop_many(
                [osp.join(data_root, p) for p in relpaths[start:stop]])
            block = np.stack([r[0] for r in results])
            crops[start:stop] = block
            crops.flush()
            atomic_write_text(
                _marker_path(out, c),
                json.dumps(
                    dict(
                        sha256=hashlib.sha256(block.tobytes()).hexdigest(),
                        shapes=[list(r[1]) for r in results])) + '\n')
            written += 1
            if progress is not None:
                progress(total - len(todo) + written, total)
    finally:
        if pool is not None:
            pool.terminate()
    del crops
    return _finalize(out, index_path, index_sha, job, n, s, int(chunk_size))


def _finalize(out: str, index_path: str, index_sha: str, job: Dict, n: int,
              s: int, chunk_size: int) -> Dict:
    """Verify every chunk against its marker, publish arrays, manifest."""
    partial = osp.join(out, PARTS_DIR, PARTIAL_NAME)
    crops = np.load(partial, mmap_mode='r', allow_pickle=False)
    chunk_sha: List[str] = []
    shapes = np.zeros((n, 4), dtype=np.int32)
    for c in range(num_chunks(n, chunk_size)):
        start, stop = _chunk_rows(n, chunk_size, c)
        marker = _read_marker(out, c, stop - start)
        digest = hashlib.sha256(crops[start:stop].tobytes()).hexdigest()
        if marker is None or marker['sha256'] != digest:
            raise CropShardError(
                f'chunk {c} of {partial} does not match its marker (written '
                f'while the run was killed?); delete {_marker_path(out, c)} '
                'and rerun to rewrite it')
        chunk_sha.append(digest)
        shapes[start:stop] = np.asarray(marker['shapes'], dtype=np.int32)
    del crops
    crops_path = osp.join(out, CROPS_NAME)
    publish_atomically(partial, crops_path)
    with atomic_write(osp.join(out, SHAPES_NAME), 'wb') as f:
        np.save(f, shapes)
    with atomic_write(osp.join(out, INDEX_NAME), 'wb') as f, \
            open(index_path, 'rb') as src:
        shutil.copyfileobj(src, f, _READ)
    manifest = dict(job)
    manifest.update(
        complete=True,
        dtype='uint8',
        shape=[n, s, s, 3],
        chunk_sha256=chunk_sha,
        crops_sha256=sha256_file(crops_path),
        shapes_sha256=sha256_file(osp.join(out, SHAPES_NAME)),
        index_sha256=sha256_file(osp.join(out, INDEX_NAME)))
    if manifest['index_sha256'] != index_sha:
        raise CropShardError(f'copy of {index_path} differs from it')
    atomic_write_text(
        osp.join(out, MANIFEST_NAME),
        json.dumps(manifest, indent=2, sort_keys=True) + '\n')
    shutil.rmtree(osp.join(out, PARTS_DIR), ignore_errors=True)
    return manifest


class CropShards:
    """Read-only access to finished crop shards.

    Arrays are memory-mapped on first use in each process (pickling, e.g.
    to data-loader workers, copies only the path and manifest).

    Args:
        root (str | PathLike): Shard directory.
        verify (str): ``'full'`` re-hashes every array; ``'sample'`` the
            index, shapes and up to 8 evenly spaced chunks of crops (about
            300 MB at 224 px, whatever the dataset size); ``'none'`` checks
            the manifest and array shapes only. Defaults to 'sample'.

    Raises:
        CropShardError: Missing, incomplete, truncated or corrupt shards.
    """

    VERIFY_MODES = ('full', 'sample', 'none')
    SAMPLE_CHUNKS = 8

    def __init__(self, root: PathLike, verify: str = 'sample') -> None:
        if verify not in self.VERIFY_MODES:
            raise ValueError(f'verify must be one of {self.VERIFY_MODES}, '
                             f'got {verify!r}')
        self.root = os.fspath(root)
        path = osp.join(self.root, MANIFEST_NAME)
        if not osp.isdir(self.root):
            raise CropShardError(
                f'Crop shards {self.root} do not exist; write them with '
                'tools/tokenizers/write_crop_shards.py')
        if not osp.isfile(path):
            hint = (' (writing was interrupted: rerun write_crop_shards.py '
                    'with the same arguments to resume)'
                    if osp.isdir(osp.join(self.root, PARTS_DIR)) else '')
            raise CropShardError(
                f'Crop shards {self.root} are incomplete: no '
                f'{MANIFEST_NAME}{hint}')
        try:
            with open(path, encoding='utf-8') as f:
                self.manifest: Dict = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            raise CropShardError(
                f'Crop shard manifest {path} is not valid JSON ({e}): it was '
                'truncated or edited; rewrite the shards') from None
        self._check_manifest(path)
        self._crops: Optional[np.ndarray] = None
        self._shapes: Optional[np.ndarray] = None
        self._index: Optional[np.ndarray] = None
        self._check_arrays()
        self.verify(verify)

    def _check_manifest(self, path: str) -> None:
        m = self.manifest
        if not isinstance(m, dict) or m.get('format') != SHARD_FORMAT:
            raise CropShardError(
                f'{path} is not a {SHARD_FORMAT!r} manifest (format '
                f'{m.get("format") if isinstance(m, dict) else m!r})')
        if m.get('complete') is not True:
            raise CropShardError(
                f'Crop shards {self.root} are incomplete (complete != true)')
        problems = []
        for key in ('num_images', 'crop_size', 'chunk_size'):
            v = m.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                problems.append(f'{key}={v!r} (a positive integer)')
        if not problems:
            n, s = m['num_images'], m['crop_size']
            if m.get('shape') != [n, s, s, 3]:
                problems.append(f'shape={m.get("shape")!r} (expected '
                                f'{[n, s, s, 3]})')
            chunks = m.get('chunk_sha256')
            if not (isinstance(chunks, list) and len(chunks) == num_chunks(
                    n, m['chunk_size'])):
                problems.append('chunk_sha256 (one digest per chunk)')
        if m.get('crop') != CROP_RECIPE:
            problems.append(f'crop={m.get("crop")!r} (expected '
                            f'{CROP_RECIPE!r})')
        if m.get('channel_order') != CHANNEL_ORDER:
            problems.append(f'channel_order={m.get("channel_order")!r}')
        for key in ('crops_sha256', 'shapes_sha256', 'index_sha256',
                    'store_index_sha256'):
            v = m.get(key)
            if not (isinstance(v, str) and len(v) == 64):
                problems.append(f'{key}={v!r} (a sha256 hex digest)')
        if problems:
            raise CropShardError(
                f'Crop shard manifest {path} is invalid: ' +
                '; '.join(problems) + '. It was edited or written by another '
                'tool; rewrite the shards with '
                'tools/tokenizers/write_crop_shards.py.')

    def __getstate__(self) -> Dict:
        state = dict(self.__dict__)
        state['_crops'] = state['_shapes'] = state['_index'] = None
        return state

    def _load(self, name: str) -> np.ndarray:
        try:
            return np.load(
                osp.join(self.root, name), mmap_mode='r', allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:  # truncated file
            raise CropShardError(
                f'Crop shards {self.root}: {name} is truncated or corrupt '
                f'({e}); rewrite the shards') from None

    @property
    def crops(self) -> np.ndarray:
        """(num_images, S, S, 3) uint8 memory map."""
        if self._crops is None:
            self._crops = self._load(CROPS_NAME)
        return self._crops

    @property
    def shapes(self) -> np.ndarray:
        """(num_images, 4) int32: ori h, ori w, resized w, resized h."""
        if self._shapes is None:
            self._shapes = np.asarray(self._load(SHAPES_NAME))
        return self._shapes

    @property
    def index(self) -> np.ndarray:
        """(num_images,) sorted bytes keys, the token store's index."""
        if self._index is None:
            self._index = self._load(INDEX_NAME)
        return self._index

    @property
    def num_images(self) -> int:
        return int(self.manifest['num_images'])

    @property
    def crop_size(self) -> int:
        return int(self.manifest['crop_size'])

    @property
    def decoder(self) -> str:
        return str(self.manifest.get('decoder'))

    def _check_arrays(self) -> None:
        n, s = self.num_images, self.crop_size
        for name in (CROPS_NAME, SHAPES_NAME, INDEX_NAME):
            if not osp.isfile(osp.join(self.root, name)):
                raise CropShardError(
                    f'Crop shards {self.root} are incomplete: {name} missing')
        expected = {
            CROPS_NAME: (self.crops, (n, s, s, 3), np.uint8),
            SHAPES_NAME: (self.shapes, (n, 4), np.int32),
        }
        for name, (arr, shape, dtype) in expected.items():
            if arr.shape != shape or arr.dtype != dtype:
                raise CropShardError(
                    f'Crop shards {self.root}: {name} is {arr.dtype} '
                    f'{arr.shape}, manifest says {np.dtype(dtype).name} '
                    f'{shape}')
        if self.index.shape != (n, ):
            raise CropShardError(
                f'Crop shards {self.root}: {INDEX_NAME} has '
                f'{self.index.shape[0]} keys, manifest says {n}')

    def verify(self, mode: str = 'full') -> None:
        """Re-hash arrays against the manifest.

        Args:
            mode (str): ``'full'``, ``'sample'`` or ``'none'`` (see class).

        Raises:
            CropShardError: Naming the corrupt array or chunk.
        """
        if mode == 'none':
            return
        m = self.manifest
        for name, key in ((SHAPES_NAME, 'shapes_sha256'),
                          (INDEX_NAME, 'index_sha256')):
            digest = sha256_file(osp.join(self.root, name))
            if digest != m[key]:
                raise CropShardError(
                    f'Crop shards {self.root}: {name} is corrupt (sha256 '
                    f'{digest} != manifest {m[key]})')
        if m['index_sha256'] != m['store_index_sha256']:
            raise CropShardError(
                f'Crop shards {self.root}: index_sha256 differs from '
                'store_index_sha256; the manifest was edited')
        if mode == 'full':
            digest = sha256_file(osp.join(self.root, CROPS_NAME))
            if digest != m['crops_sha256']:
                raise CropShardError(
                    f'Crop shards {self.root}: {CROPS_NAME} is corrupt '
                    f'(sha256 {digest} != manifest {m["crops_sha256"]})')
            chunks: Sequence[int] = range(len(m['chunk_sha256']))
        else:
            total = len(m['chunk_sha256'])
            k = min(total, self.SAMPLE_CHUNKS)
            chunks = sorted({round(i * (total - 1) / max(k - 1, 1))
                             for i in range(k)})
        size = int(m['chunk_size'])
        for c in chunks:
            start, stop = _chunk_rows(self.num_images, size, c)
            digest = hashlib.sha256(
                self.crops[start:stop].tobytes()).hexdigest()
            if digest != m['chunk_sha256'][c]:
                raise CropShardError(
                    f'Crop shards {self.root}: chunk {c} (rows {start}-'
                    f'{stop - 1}) of {CROPS_NAME} is corrupt (sha256 '
                    f'{digest} != manifest {m["chunk_sha256"][c]})')

    def check_store(self, store: TokenStore) -> None:
        """Raise unless the shards hold the store's images in its order.

        Raises:
            CropShardError: Naming every disagreement.
        """
        problems = []
        if self.num_images != store.num_images:
            problems.append(f'number of images: shards {self.num_images}, '
                            f'store {store.num_images}')
        if self.manifest['store_index_sha256'] != \
                store.manifest.get('index_sha256'):
            problems.append(
                'keys/order: the shards were written from a token store '
                f'whose index sha256 is {self.manifest["store_index_sha256"]}'
                f', this store\'s is {store.manifest.get("index_sha256")}')
        if store.decoder is not None and store.decoder != self.decoder:
            problems.append(f'image decoder: shards {self.decoder!r}, store '
                            f'{store.decoder!r}')
        if store.crop != 'center':
            problems.append(f'crop: store {store.crop!r}, shards hold the '
                            'centre crop')
        if problems:
            raise CropShardError(
                f'Crop shards {self.root} do not match token store '
                f'{store.root}: ' + '; '.join(problems) + '. Rewrite them '
                'from this store with tools/tokenizers/write_crop_shards.py.')

    def row(self, relpath: str) -> int:
        """Row of ``relpath`` or -1 when absent (binary search)."""
        key = relpath.encode('utf-8')
        index = self.index
        pos = int(np.searchsorted(index, key))
        if pos < len(index) and index[pos] == key:
            return pos
        return -1

    def __len__(self) -> int:
        return self.num_images
