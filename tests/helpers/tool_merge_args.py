"""Run our tools' ``parse_args``/``merge_args`` on cases, in a subprocess.

``python tool_merge_args.py REPO CASES.json`` applies each case ``{'tool',
'argv', 'cfg'}`` with ``mapet.utils.cli_<tool>`` (the flags of
``tools/<tool>.py``) in a fresh, CPU-only interpreter and prints a JSON list
of ``{'cfg': merged config}`` or ``{'error': type, 'message': str}``.
"""
import importlib
import json
import sys

from mmengine.config import Config


def main(repo: str, cases_file: str) -> None:
    with open(cases_file) as f:
        cases = json.load(f)
    tools = {}
    results = []
    for case in cases:
        name = case['tool']
        if name not in tools:
            tools[name] = importlib.import_module(f'mapet.utils.cli_{name}')
        tool = tools[name]
        try:
            args = tool.parse_args(case['argv'])
            cfg = tool.merge_args(Config(case['cfg']), args)
            results.append({'cfg': cfg.to_dict()})
        except SystemExit as e:
            results.append({'error': 'SystemExit', 'message': str(e.code)})
        except Exception as e:  # reported to the test
            results.append({'error': type(e).__name__, 'message': str(e)})
    print(json.dumps(results, default=repr))


if __name__ == '__main__':
    main(*sys.argv[1:3])
