"""Run our tools' ``parse_args``/``merge_args`` on cases, in a subprocess.

``python tool_merge_args.py REPO CASES.json`` loads ``REPO/tools/<tool>.py``
(not as ``__main__``, so nothing runs) in this fresh interpreter, applies
each case ``{'tool', 'argv', 'cfg'}`` and prints a JSON list of
``{'cfg': merged config}`` or ``{'error': type, 'message': str}``. The test
process itself never imports the tools.
"""
import json
import os.path as osp
import runpy
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
            tools[name] = runpy.run_path(
                osp.join(repo, 'tools', f'{name}.py'), run_name=f'tool_{name}')
        tool = tools[name]
        try:
            args = tool['parse_args'](case['argv'])
            cfg = tool['merge_args'](Config(case['cfg']), args)
            results.append({'cfg': cfg.to_dict()})
        except SystemExit as e:
            results.append({'error': 'SystemExit', 'message': str(e.code)})
        except Exception as e:  # reported to the test
            results.append({'error': type(e).__name__, 'message': str(e)})
    print(json.dumps(results, default=repr))


if __name__ == '__main__':
    main(*sys.argv[1:3])
