"""On-disk token store: pre-extracted visual tokens for every image of a split.

Layout of a store directory::

    manifest.json   written last; its presence with "complete": true marks a
                    finished store (tokenizer metadata, codebook checksum,
                    crop and size, grid, vocabulary, dataset fingerprint,
                    sha256 of the two arrays)
    tokens.npy      uint16 (num_images, grid_h * grid_w), row-major token grid,
                    opened memory-mapped (shared page cache across workers)
    index.npy       bytes array (num_images,): each image's path relative to
                    the data root (POSIX, UTF-8), sorted; row i of tokens.npy
                    belongs to index[i], looked up by binary search
    parts/          only while extracting: job.json + chunk_XXXXXX.npy written
                    atomically, so an interrupted run resumes where it stopped

Rows follow the sorted relative paths and chunks cover fixed row ranges, so
the merged bytes do not depend on the number of processes, on batching or on
interruptions. No timestamps or host names are stored, so identical inputs
give identical bytes.
"""
import hashlib
import json
import os
import os.path as osp
import shutil
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from mapet.utils.atomic import atomic_write, atomic_write_text, sha256_file

PathLike = Union[str, os.PathLike]

STORE_FORMAT = 'mapet-token-store-v1'
MANIFEST_NAME = 'manifest.json'
TOKENS_NAME = 'tokens.npy'
INDEX_NAME = 'index.npy'
PARTS_DIR = 'parts'
JOB_NAME = 'job.json'
TOKEN_DTYPE = np.uint16
MAX_VOCAB = int(np.iinfo(TOKEN_DTYPE).max) + 1


class TokenStoreError(ValueError):
    """A token store is missing, incomplete, or does not match its user."""


def dataset_fingerprint(relpaths: Sequence[str]) -> str:
    """SHA-256 over the sorted relative paths (one per line).

    Args:
        relpaths (Sequence[str]): Image paths relative to the data root.

    Returns:
        str: Hex digest identifying the image list.
    """
    h = hashlib.sha256()
    for p in sorted(relpaths):
        h.update(p.encode('utf-8') + b'\n')
    return h.hexdigest()


def _chunk_path(root: str, chunk: int) -> str:
    return osp.join(root, PARTS_DIR, f'chunk_{chunk:06d}.npy')


def num_chunks(num_images: int, chunk_size: int) -> int:
    """Number of fixed-size row chunks covering ``num_images`` rows."""
    return (num_images + chunk_size - 1) // chunk_size


def prepare_parts(root: PathLike, job: Dict) -> None:
    """Create ``parts/`` and record (or check) the job description.

    Args:
        root (str | PathLike): Store directory.
        job (dict): Everything that determines the tokens (tokenizer
            metadata, preprocessing, dataset fingerprint, chunk size).

    Raises:
        TokenStoreError: ``root`` already holds a finished store, or parts of
            a different job.
    """
    root = os.fspath(root)
    if osp.isfile(osp.join(root, MANIFEST_NAME)):
        raise TokenStoreError(
            f'{root} already holds a finished token store; choose another '
            'output directory or delete it to re-extract')
    os.makedirs(osp.join(root, PARTS_DIR), exist_ok=True)
    diff = record_job(osp.join(root, PARTS_DIR, JOB_NAME), job)
    if diff:
        raise TokenStoreError(
            f'{root}/{PARTS_DIR} holds parts of another extraction '
            f'(differs in: {", ".join(diff)}); delete {PARTS_DIR}/ or use '
            'another output directory')


def finished_manifest(root: PathLike, job: Dict) -> Optional[Dict]:
    """The manifest of a finished store at ``root`` written by ``job``.

    Rerunning an extraction that already completed is then a no-op, as for
    an interrupted one (the README's "rerun the same command").

    Args:
        root (str | PathLike): Store directory.
        job (dict): The job description (without ``chunk_size``, which the
            manifest does not record).

    Returns:
        dict | None: The manifest, or None when ``root`` holds no finished
        store.

    Raises:
        TokenStoreError: ``root`` holds a finished store of another job;
            the message names the differing fields.
    """
    path = osp.join(os.fspath(root), MANIFEST_NAME)
    if not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        manifest = json.load(f)
    # Compare through JSON: the manifest holds lists where the job has
    # tuples.
    job = json.loads(json.dumps(job))
    diff = sorted(k for k in job if manifest.get(k) != job[k])
    if diff:
        raise TokenStoreError(
            f'{os.fspath(root)} already holds a finished token store of '
            f'another extraction (differs in: {", ".join(diff)}); choose '
            'another output directory or delete it to re-extract')
    return manifest


def record_job(path: str, job: Dict) -> List[str]:
    """Record a resumable job's description, or check it against the one
    recorded.

    Args:
        path (str): JSON file of the job description.
        job (dict): The job description.

    Returns:
        list[str]: The keys in which the job already recorded at ``path``
        differs from ``job`` (sorted); empty when ``path`` records the same
        job or did not exist (then ``job`` is written there atomically).
    """
    text = json.dumps(job, sort_keys=True, indent=1) + '\n'
    if osp.isfile(path):
        with open(path, encoding='utf-8') as f:
            old = json.load(f)
        return sorted(
            k for k in set(old) | set(job) if old.get(k) != job.get(k))
    atomic_write_text(path, text)
    return []


def chunk_done(root: PathLike, chunk: int, rows: int, num_tokens: int) -> bool:
    """Whether chunk ``chunk`` was written completely (valid header/shape)."""
    path = _chunk_path(os.fspath(root), chunk)
    if not osp.isfile(path):
        return False
    try:
        arr = np.load(path, mmap_mode='r', allow_pickle=False)
    except (ValueError, OSError):
        return False
    return arr.shape == (rows, num_tokens) and arr.dtype == TOKEN_DTYPE


def write_chunk(root: PathLike, chunk: int, tokens: np.ndarray,
                vocab_size: int) -> None:
    """Atomically write one chunk of tokens.

    Args:
        root (str | PathLike): Store directory.
        chunk (int): Chunk id.
        tokens (np.ndarray): (rows, num_tokens) integer tokens.
        vocab_size (int): Tokens must lie in ``[0, vocab_size)``.
    """
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise TokenStoreError(
            f'chunk {chunk}: token ids outside [0, {vocab_size})')
    with atomic_write(_chunk_path(os.fspath(root), chunk), 'wb') as f:
        np.save(f, np.ascontiguousarray(tokens, dtype=TOKEN_DTYPE))


def merge_store(root: PathLike, relpaths: Sequence[str], chunk_size: int,
                num_tokens: int, manifest: Dict) -> Dict:
    """Verify every chunk and merge them into the final store.

    ``tokens.npy`` and ``index.npy`` are written atomically, then the
    manifest (last, so it only exists for a complete store), then
    ``parts/`` is removed.

    Args:
        root (str | PathLike): Store directory.
        relpaths (Sequence[str]): Sorted relative paths (row order).
        chunk_size (int): Rows per chunk.
        num_tokens (int): Tokens per image.
        manifest (dict): Manifest fields (tokenizer, grid, crop, ...).

    Returns:
        dict: The manifest written.

    Raises:
        TokenStoreError: A chunk is missing or malformed.
    """
    root = os.fspath(root)
    n = len(relpaths)
    missing = [
        c for c in range(num_chunks(n, chunk_size))
        if not chunk_done(root, c, min(chunk_size, n -
                                       c * chunk_size), num_tokens)
    ]
    if missing:
        raise TokenStoreError(
            f'cannot merge {root}: {len(missing)} chunk(s) missing or '
            f'incomplete (first: {missing[:5]}); rerun the extraction to '
            'resume')
    tokens_path = osp.join(root, TOKENS_NAME)
    header = {
        'descr': np.lib.format.dtype_to_descr(np.dtype(TOKEN_DTYPE)),
        'fortran_order': False,
        'shape': (n, num_tokens)
    }
    with atomic_write(tokens_path, 'wb') as f:
        np.lib.format.write_array_header_1_0(f, header)
        for c in range(num_chunks(n, chunk_size)):
            arr = np.load(_chunk_path(root, c), allow_pickle=False)
            f.write(np.ascontiguousarray(arr, dtype=TOKEN_DTYPE).tobytes())
    encoded = [p.encode('utf-8') for p in relpaths]
    index = np.array(encoded, dtype=f'S{max(map(len, encoded), default=1)}')
    with atomic_write(osp.join(root, INDEX_NAME), 'wb') as f:
        np.save(f, index)
    out = dict(manifest)
    out.update(
        format=STORE_FORMAT,
        complete=True,
        num_images=n,
        num_tokens=num_tokens,
        dtype=np.dtype(TOKEN_DTYPE).name,
        tokens_sha256=sha256_file(tokens_path),
        index_sha256=sha256_file(osp.join(root, INDEX_NAME)))
    atomic_write_text(
        osp.join(root, MANIFEST_NAME),
        json.dumps(out, indent=2, sort_keys=True) + '\n')
    shutil.rmtree(osp.join(root, PARTS_DIR), ignore_errors=True)
    return out


def _as_grid(grid_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(grid_size, int):
        return grid_size, grid_size
    h, w = grid_size
    return int(h), int(w)


class TokenStore:
    """Read-only access to a finished token store.

    The arrays are memory-mapped on first use in each process (pickling the
    store, e.g. to dataloader workers, copies only the path and manifest).

    Args:
        root (str | PathLike): Store directory.

    Raises:
        TokenStoreError: The store is missing or incomplete.
    """

    def __init__(self, root: PathLike) -> None:
        self.root = os.fspath(root)
        manifest_path = osp.join(self.root, MANIFEST_NAME)
        if not osp.isdir(self.root):
            raise TokenStoreError(
                f'Token store {self.root} does not exist; create it with '
                'tools/tokenizers/extract_tokens.py')
        if not osp.isfile(manifest_path):
            hint = (' (an extraction was interrupted: rerun '
                    'extract_tokens.py with the same arguments to resume)'
                    if osp.isdir(osp.join(self.root, PARTS_DIR)) else '')
            raise TokenStoreError(
                f'Token store {self.root} is incomplete: no {MANIFEST_NAME}'
                f'{hint}')
        try:
            with open(manifest_path, encoding='utf-8') as f:
                self.manifest: Dict = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            raise TokenStoreError(
                f'Token store manifest {manifest_path} is not valid JSON '
                f'({e}): it was truncated or edited. Re-extract the store '
                '(or rerun the merge of extract_tokens.py).') from None
        if not isinstance(self.manifest, dict):
            raise TokenStoreError(
                f'Token store manifest {manifest_path} is not a JSON object; '
                'it was edited. Re-extract the store.')
        if self.manifest.get('format') != STORE_FORMAT:
            raise TokenStoreError(
                f'{manifest_path} has format {self.manifest.get("format")!r},'
                f' expected {STORE_FORMAT!r}')
        if not self.manifest.get('complete', False):
            raise TokenStoreError(
                f'Token store {self.root} is incomplete (manifest says '
                'complete=false)')
        self._check_manifest_fields(manifest_path)
        self._tokens: Optional[np.ndarray] = None
        self._index: Optional[np.ndarray] = None
        self._check_arrays()

    def _check_manifest_fields(self, manifest_path: str) -> None:
        """Every field the loader relies on: present, typed, consistent."""
        m = self.manifest
        problems = []

        def positive_int(key):
            value = m.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or \
                    value < 1:
                problems.append(f'{key}={value!r} (a positive integer)')
                return None
            return value

        n, t, vocab = (positive_int('num_images'), positive_int('num_tokens'),
                       positive_int('vocab_size'))
        grid = m.get('grid')
        if not (isinstance(grid, list) and len(grid) == 2 and all(
                isinstance(g, int) and not isinstance(g, bool) and g >= 1
                for g in grid)):
            problems.append(f'grid={grid!r} (two positive integers)')
        elif t is not None and grid[0] * grid[1] != t:
            problems.append(f'grid={grid} does not give num_tokens={t}')
        if vocab is not None and vocab > MAX_VOCAB:
            problems.append(f'vocab_size={vocab} (at most {MAX_VOCAB})')
        if not isinstance(m.get('crop'), str):
            problems.append(f"crop={m.get('crop')!r} (a string)")
        # The arrays' checksums are compared in verify().
        del n
        if problems:
            raise TokenStoreError(
                f'Token store manifest {manifest_path} is invalid: ' +
                '; '.join(problems) + '. It was edited or written by '
                'another tool; re-extract the store with '
                'tools/tokenizers/extract_tokens.py.')

    def __getstate__(self) -> Dict:
        state = dict(self.__dict__)
        state['_tokens'] = state['_index'] = None
        return state

    @property
    def tokens(self) -> np.ndarray:
        """(num_images, num_tokens) uint16 memory map."""
        if self._tokens is None:
            self._tokens = np.load(
                osp.join(self.root, TOKENS_NAME),
                mmap_mode='r',
                allow_pickle=False)
        return self._tokens

    @property
    def index(self) -> np.ndarray:
        """(num_images,) sorted bytes array of relative paths."""
        if self._index is None:
            self._index = np.load(
                osp.join(self.root, INDEX_NAME),
                mmap_mode='r',
                allow_pickle=False)
        return self._index

    def _check_arrays(self) -> None:
        n, t = self.num_images, self.num_tokens
        for name in (TOKENS_NAME, INDEX_NAME):
            if not osp.isfile(osp.join(self.root, name)):
                raise TokenStoreError(
                    f'Token store {self.root} is incomplete: {name} missing')
        try:
            tokens, index = self.tokens, self.index
        except ValueError as e:  # truncated file: header/size disagree
            raise TokenStoreError(
                f'Token store {self.root} is incomplete or corrupt: {e}')
        if tokens.shape != (n, t) or tokens.dtype != TOKEN_DTYPE:
            raise TokenStoreError(
                f'Token store {self.root} is incomplete: {TOKENS_NAME} is '
                f'{tokens.dtype} {tokens.shape}, manifest says uint16 '
                f'{(n, t)}')
        if index.shape != (n, ):
            raise TokenStoreError(
                f'Token store {self.root} is incomplete: {INDEX_NAME} has '
                f'{index.shape[0]} entries, manifest says {n}')

    @property
    def num_images(self) -> int:
        return int(self.manifest['num_images'])

    @property
    def num_tokens(self) -> int:
        return int(self.manifest['num_tokens'])

    @property
    def grid(self) -> Tuple[int, int]:
        return _as_grid(self.manifest['grid'])

    @property
    def vocab_size(self) -> int:
        return int(self.manifest['vocab_size'])

    @property
    def crop(self) -> str:
        return str(self.manifest['crop'])

    @property
    def decoder(self) -> Optional[str]:
        """The image decoder the tokens were computed from (or None)."""
        return self.manifest.get('decoder')

    @property
    def codebook_sha256(self) -> Optional[str]:
        return self.manifest.get('tokenizer', {}).get('codebook_sha256')

    def check(self,
              grid_size: Union[int, Sequence[int], None] = None,
              vocab_size: Optional[int] = None,
              crop: Optional[str] = None,
              codebook_sha256: Optional[str] = None,
              decoder: Optional[str] = None,
              allow_unrecorded_decoder: bool = False) -> None:
        """Raise if the store does not match what a pipeline expects.

        Args:
            decoder (str, optional): Expected image decoder
                (:data:`mapet.datasets.image_decode.DECODER_ID`).
            allow_unrecorded_decoder (bool): Accept a store whose manifest
                records no decoder (written before it was recorded).
            grid_size (int | Sequence[int], optional): Expected token grid.
            vocab_size (int, optional): Expected vocabulary size.
            crop (str, optional): Expected crop mode.
            codebook_sha256 (str, optional): Expected codebook checksum.

        Raises:
            TokenStoreError: Naming every mismatching field.
        """
        problems: List[str] = []
        if grid_size is not None and _as_grid(grid_size) != self.grid:
            problems.append(f'grid size: store {self.grid}, expected '
                            f'{_as_grid(grid_size)}')
        if vocab_size is not None and int(vocab_size) != self.vocab_size:
            problems.append(f'vocabulary size: store {self.vocab_size}, '
                            f'expected {vocab_size}')
        if crop is not None and crop != self.crop:
            problems.append(f'crop: store {self.crop!r}, expected {crop!r}')
        if codebook_sha256 is not None and \
                codebook_sha256 != self.codebook_sha256:
            problems.append(
                f'codebook: store was written with codebook sha256 '
                f'{self.codebook_sha256}, expected {codebook_sha256} (the '
                'store comes from another codebook/tokenizer)')
        if decoder is not None and self.decoder != decoder and not (
                self.decoder is None and allow_unrecorded_decoder):
            if self.decoder is None:
                problems.append(
                    'image decoder: the manifest records none (the store '
                    'was extracted before mapet recorded it, possibly '
                    f'with other pixels than the trainer\'s {decoder!r}: '
                    'EXIF rotation, 16-bit, palette and CMYK images '
                    'differ); re-extract it with tools/tokenizers/'
                    'extract_tokens.py, or pass LoadVisualTokens('
                    'allow_unrecorded_decoder=True) if you know it was '
                    'decoded the same way')
            else:
                problems.append(
                    f'image decoder: store {self.decoder!r}, trainer '
                    f'{decoder!r} (the tokens were computed from other '
                    'pixels); re-extract the store with this version')
        if problems:
            raise TokenStoreError(
                f'Token store {self.root} does not match the pipeline: ' +
                '; '.join(problems))

    def verify(self) -> None:
        """Re-hash both arrays against the manifest (reads every byte)."""
        for name, key in ((TOKENS_NAME, 'tokens_sha256'), (INDEX_NAME,
                                                           'index_sha256')):
            digest = sha256_file(osp.join(self.root, name))
            if digest != self.manifest.get(key):
                raise TokenStoreError(
                    f'{name} in {self.root} is corrupt: sha256 {digest} != '
                    f'manifest {self.manifest.get(key)}')
        # Values the loader relies on: tokens inside the vocabulary, keys
        # sorted and unique (rows are found by binary search).
        if self.num_images and int(self.tokens.max()) >= self.vocab_size:
            raise TokenStoreError(
                f'{TOKENS_NAME} in {self.root} holds token '
                f'{int(self.tokens.max())} >= vocab_size={self.vocab_size} '
                'of its manifest; re-extract the store.')
        index = self.index
        if len(index) > 1 and not bool(np.all(index[1:] > index[:-1])):
            raise TokenStoreError(
                f'{INDEX_NAME} in {self.root} is not sorted and unique: '
                'images would be matched to the wrong tokens; re-extract '
                'the store.')

    def row(self, relpath: str) -> int:
        """Row of ``relpath`` or -1 when absent."""
        key = relpath.encode('utf-8')
        index = self.index
        pos = int(np.searchsorted(index, key))
        if pos < len(index) and index[pos] == key:
            return pos
        return -1

    def __contains__(self, relpath: str) -> bool:
        return self.row(relpath) >= 0

    def __len__(self) -> int:
        return self.num_images

    def get(self, relpath: str) -> np.ndarray:
        """Tokens of one image as int64 (num_tokens,).

        Raises:
            KeyError: The image is not in the store.
        """
        r = self.row(relpath)
        if r < 0:
            raise KeyError(relpath)
        return np.asarray(self.tokens[r], dtype=np.int64)

    def relpaths(self) -> Iterable[str]:
        """Relative paths in row order."""
        for p in self.index:
            yield p.decode('utf-8')


class StoreKeyFinder:
    """Find the store key (path relative to the data root) of an image path.

    With ``data_root`` the key is ``relpath(img_path, data_root)``; without
    it, the longest trailing run of path components that the store holds
    (e.g. ``train/cat/cat_00001.png`` for ``data/demo/train/cat/...``). The
    stripped prefix is cached, so later look-ups are a single ``row_of``
    call. Shared by every transform that reads a store keyed this way.

    Args:
        row_of (Callable[[str], int]): Row of a key in the store, -1 if
            absent (e.g. :meth:`TokenStore.row`).
        data_root (str, optional): Root the keys are relative to.
    """

    def __init__(self, row_of, data_root: Optional[str] = None) -> None:
        self.row_of = row_of
        self.data_root = data_root
        self._prefix: Optional[str] = None

    def __call__(self, img_path: str) -> Tuple[Optional[str], int]:
        """``(key, row)`` of ``img_path``, or ``(None, -1)`` if absent."""
        path = os.fspath(img_path).replace(os.sep, '/')
        if self.data_root is not None:
            key = osp.relpath(path, self.data_root).replace(os.sep, '/')
            row = self.row_of(key)
            return (key, row) if row >= 0 else (None, -1)
        if self._prefix is not None and path.startswith(self._prefix):
            key = path[len(self._prefix):]
            row = self.row_of(key)
            if row >= 0:
                return key, row
        parts = path.split('/')
        for i in range(len(parts)):
            key = '/'.join(parts[i:])
            row = self.row_of(key) if key else -1
            if row >= 0:
                self._prefix = path[:len(path) - len(key)]
                return key, row
        return None, -1
