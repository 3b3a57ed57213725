"""model-index.yml <-> metafiles <-> configs are consistent."""

import yaml

import downstream_helpers as H  # tests/helpers

REQUIRED_METADATA = ('Batch Size', 'Tokenizer')


def _metafiles():
    index = yaml.safe_load((H.REPO / 'model-index.yml').read_text())
    return [H.REPO / p for p in index['Import']]


def _config_folders():
    """Folders under configs/ (not _base_) that hold configs."""
    return sorted({
        p.parent for p in H.CONFIGS.rglob('*.py')
        if '_base_' not in p.relative_to(H.CONFIGS).parts
    })


def test_index_lists_every_config_folder_metafile():
    metafiles = _metafiles()
    assert all(p.is_file() for p in metafiles), metafiles
    for folder in _config_folders():
        assert folder / 'metafile.yml' in metafiles, folder
        assert (folder / 'README.md').is_file(), folder


def test_every_config_is_in_a_metafile_and_back():
    listed = {}
    for metafile in _metafiles():
        meta = yaml.safe_load(metafile.read_text())
        collections = {
            c['Name']: c.get('Metadata', {})
            for c in meta.get('Collections', [])
        }
        for model in meta['Models']:
            config = H.REPO / model['Config']
            assert config.is_file(), (metafile, model['Config'])
            assert model['Name'] == config.stem
            assert model['In Collection'] in collections
            assert model['Weights'] is None  # nothing published yet
            for key in REQUIRED_METADATA:
                assert key in model['Metadata'], (model['Name'], key)
            assert 'Architecture' in model['Metadata'] or \
                'Architecture' in collections[model['In Collection']]
            assert config not in listed, f'{config} listed twice'
            listed[config] = metafile
    configs = {
        p for p in H.CONFIGS.rglob('*.py')
        if '_base_' not in p.relative_to(H.CONFIGS).parts
    }
    assert configs - set(listed) == set(), 'configs missing from metafiles'


def test_paper_reference_numbers_are_labelled():
    meta = yaml.safe_load(
        (H.CONFIGS / 'mapet' / 'metafile.yml').read_text())
    models = {m['Name']: m for m in meta['Models']}
    model = models['mapet_vit-b_vqkd_300e_in1k']
    metrics = {(r['Dataset'], k): v for r in model['Results']
               for k, v in r['Metrics'].items()}
    assert metrics[('ImageNet-1k', 'Top 1 Accuracy')] == 84.4
    assert metrics[('ADE20K', 'mIoU')] == 50.4
    assert metrics[('Food-101', 'Linear Probe Top 1 Accuracy')] == 86.9
    assert 'reported in the paper' in model['Comment']
