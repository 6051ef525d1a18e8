"""`make test-portability`: the whole suite as is, on lower CPU kernels, and with both cores busy.

Runs pytest three times and prints one line per run:

- `as-is`: this machine's own kernels;
- `lower-isa`: `ATEN_CPU_CAPABILITY` one level below the machine's (`avx2` on an AVX-512
  box, `default` on an AVX2 one) and `ONEDNN_MAX_CPU_ISA=AVX2`, so PyTorch and oneDNN take
  other kernels (as another CPU vendor or generation would);
- `loaded`: `stress-ng --cpu <cores>` keeps every core busy for the whole run.

Each line gives the pytest counts, the wall time and the tightest learning margin (the largest
trained / untrained ratio over its bound, from `tests/learning.py`). Extra arguments are passed
to pytest (e.g. `tests/encoders` for a quick look). Exit code 0 when all three runs pass.
"""
import json
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.learning import LOG_ENV  # noqa: E402
from tests.machine_info import cpu_capability, machine_lines  # noqa: E402

_LOWER = {'AVX512': 'avx2', 'AVX2': 'default', 'DEFAULT': 'default'}
# the last line of `pytest -q`: '652 passed, 8 deselected in 327.15s' (no '=' frame with -q)
_SUMMARY = re.compile(r'^(?:=+ )?(\d.*\b(?:passed|failed|errors?)\b.*) in [\d.]+s',
                      re.MULTILINE)


def _tightest(log: Path) -> str:
    if not log.exists():
        return 'no learning checks ran'
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    if not rows:
        return 'no learning checks ran'
    worst = max(rows, key=lambda r: r['value'] / r['bound'])
    return (f'tightest learning margin {worst["value"] / worst["bound"]:.2f} of its bound '
            f'({worst["test"].split("::")[-1]}: {worst["what"]})')


def _run(name: str, env: dict, pytest_args: list[str], load: bool) -> bool:
    log = Path(tempfile.mkdtemp(prefix='ev-portability-')) / 'learning.jsonl'
    env = {**os.environ, **env, LOG_ENV: str(log)}
    stress = None
    if load:
        cores = str(os.cpu_count() or 2)
        stress = subprocess.Popen(['stress-ng', '--cpu', cores, '--quiet'],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    try:
        result = subprocess.run([sys.executable, '-m', 'pytest', '-q', *pytest_args],
                                cwd=ROOT, env=env, capture_output=True, text=True)
    finally:
        if stress is not None:
            stress.terminate()
            stress.wait()
    minutes = (time.monotonic() - start) / 60
    found = _SUMMARY.findall(result.stdout)
    summary = found[-1] if found else f'pytest exited {result.returncode}, no summary'
    settings = ' '.join(f'{k}={v}' for k, v in env.items()
                        if k in ('ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA'))
    settings += ' stress-ng on every core' if load else ''
    print(f'{name:<10} {summary}; {minutes:.1f} min; {_tightest(log)}'
          f'{"; " + settings if settings else ""}', flush=True)
    if result.returncode != 0:
        failed = [line for line in result.stdout.splitlines()
                  if line.startswith(('FAILED', 'ERROR'))]
        print('\n'.join(f'           {line}' for line in failed), flush=True)
        kept = Path(tempfile.gettempdir()) / f'ev-portability-{name}.log'
        kept.write_text(result.stdout + '\n' + result.stderr)
        print(f'           full output: {kept}', flush=True)
    shutil.rmtree(log.parent, ignore_errors=True)
    return result.returncode == 0


def main(argv: list[str]) -> int:
    if shutil.which('stress-ng') is None:
        print('test-portability needs stress-ng (sudo apt-get install stress-ng)',
              file=sys.stderr)
        return 2
    for line in machine_lines():
        print(line)
    lower = _LOWER[cpu_capability()]
    runs = [('as-is', {}, False),
            ('lower-isa', {'ATEN_CPU_CAPABILITY': lower, 'ONEDNN_MAX_CPU_ISA': 'AVX2'}, False),
            ('loaded', {}, True)]
    results = [_run(name, env, argv, load) for name, env, load in runs]
    return 0 if all(results) else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
