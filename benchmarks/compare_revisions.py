"""Old vs new speed of one benchmark, interleaved: A B B A A B ... under two checkouts.

  python benchmarks/compare_revisions.py --a=/path/to/old_checkout --b=. --rounds=6 \
      --metric=cached_images_per_s -- benchmarks/bench_sampling.py --sizes=mnist \
      --naive_steps=2 --repeats=5
  python benchmarks/compare_revisions.py --a=OLD --b=. --metric=step_s --lower_is_better \
      -- benchmarks/bench_models.py --sizes=mnist --steps=20

Each run is `python SCRIPT ARGS --out=FILE` started in one checkout's root with
PYTHONPATH=<that checkout>/src, so each revision runs its own benchmark script, configs
and code. The script writes JSON: a list of rows, or {'results': [rows]}; every row
carries `--key` (default 'model') and the number `--metric`. On a shared machine the load
drifts, so the two revisions alternate in ABBA order (each pair's order flips, so a
steady drift favours neither side); the table gives each revision's median over the
rounds and the median of the per-round ratios B / A, with their min..max as the spread.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def run_once(checkout: str, script_args: list[str], out: str) -> list[dict]:
  """One benchmark run in `checkout`; its result rows."""
  env = {**os.environ, 'PYTHONPATH': os.path.join(checkout, 'src')}
  subprocess.run(
    [sys.executable, *script_args, f'--out={out}'],
    cwd=checkout,
    env=env,
    check=True,
    stdout=subprocess.DEVNULL,
  )
  with open(out) as f:
    data = json.load(f)
  return data['results'] if isinstance(data, dict) else data


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--a', required=True, help='The reference checkout (old).')
  parser.add_argument('--b', required=True, help='The checkout compared with it (new).')
  parser.add_argument('--rounds', type=int, default=6, help='Runs of each revision.')
  parser.add_argument('--metric', required=True, help='The row field compared.')
  parser.add_argument('--key', default='model', help='The row field naming a case.')
  parser.add_argument(
    '--lower_is_better',
    action='store_true',
    help='The metric is a time (ratios > 1 then mean B is slower).',
  )
  parser.add_argument(
    'script',
    nargs=argparse.REMAINDER,
    help='-- SCRIPT ARGS: the benchmark, relative to each checkout.',
  )
  args = parser.parse_args()
  script = args.script[1:] if args.script[:1] == ['--'] else args.script
  if not script:
    parser.error('give the benchmark after --, e.g. -- benchmarks/bench_models.py')
  checkouts = {'A': os.path.abspath(args.a), 'B': os.path.abspath(args.b)}
  values = {'A': {}, 'B': {}}  # revision -> case -> one value per round.
  with tempfile.TemporaryDirectory() as tmp:
    for i in range(args.rounds):
      for rev in 'AB' if i % 2 == 0 else 'BA':
        start = time.perf_counter()
        rows = run_once(checkouts[rev], script, os.path.join(tmp, f'{rev}.json'))
        for row in rows:
          values[rev].setdefault(row[args.key], []).append(float(row[args.metric]))
        got = ', '.join(f'{row[args.key]} {float(row[args.metric]):.4g}' for row in rows)
        print(
          f'round {i + 1} {rev}: {got} ({time.perf_counter() - start:.0f} s, '
          f'load {os.getloadavg()[0]:.1f})',
          flush=True,
        )
  print(
    f'\n{args.metric}, medians over {args.rounds} interleaved rounds; '
    f'A = {checkouts["A"]}, B = {checkouts["B"]}'
  )
  print(f'{"case":18s} {"A":>10s} {"B":>10s} {"B/A":>7s}  per-round B/A min..max')
  for case, a in values['A'].items():
    b = values['B'][case]
    ratios = [y / x for x, y in zip(a, b)]
    print(
      f'{case:18s} {statistics.median(a):10.4g} {statistics.median(b):10.4g} '
      f'{statistics.median(ratios):7.3f}  {min(ratios):.3f}..{max(ratios):.3f}'
    )
  if args.lower_is_better:
    print('(a time: B/A > 1 means B is slower)')


if __name__ == '__main__':
  main()
