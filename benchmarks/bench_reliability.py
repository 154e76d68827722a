"""How fast a second training run on a busy workdir stops, and what a resume costs.

  python benchmarks/bench_reliability.py [--repeats=3]

Starts `python -m pixel_jax.main` on the tiny config (a 24-step run) in a fresh workdir,
waits until it holds the workdir lock, then starts the same command again and times it
from launch to exit (the second run must stop with one line, non-zero). Also times a
resumed rerun after a SIGKILL at step 12 (everything a resume does: restore, finishing
the skipped work, the remaining steps) and a rerun of the finished run, beside an
uninterrupted run, with their summary lines.
Prints one line per measurement and the CPU load it was taken under.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = [
  '--config.train.num_steps=24',
  '--config.train.checkpoint_every=3',
  '--config.train.eval_every=6',
  '--config.train.sample_every=6',
  '--config.train.log_every=3',
  '--config.eval.max_examples=32',
]


def command(workdir):
  return [
    sys.executable,
    '-m',
    'pixel_jax.main',
    f'--config={os.path.join(REPO, "experiments", "tiny.py")}',
    f'--workdir={workdir}',
    *RUN,
  ]


def timed(cmd, env):
  start = time.perf_counter()
  result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
  return time.perf_counter() - start, result


def second_run_seconds(root, env):
  workdir = os.path.join(root, f'busy_{time.time_ns()}')
  first = subprocess.Popen(
    command(workdir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  lock = os.path.join(workdir, 'pixel_jax.lock')
  while first.poll() is None and not (os.path.exists(lock) and os.path.getsize(lock)):
    time.sleep(0.02)
  seconds, result = timed(command(workdir), env)
  still_running = first.poll() is None
  first.wait()
  last = result.stderr.strip().splitlines()[-1]
  return seconds, result.returncode, last, still_running


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  env = dict(os.environ, PYTHONPATH=os.path.join(REPO, 'src'))
  with tempfile.TemporaryDirectory() as root:
    env['JAX_COMPILATION_CACHE_DIR'] = os.path.join(root, 'jax_cache')
    env['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
    full, _ = timed(command(os.path.join(root, 'warm')), env)  # Fills the compile cache.
    full, result = timed(command(os.path.join(root, 'full')), env)
    print(
      f'uninterrupted 24-step run (compile cache warm): {full:.1f} s: '
      f'{result.stdout.strip().splitlines()[-1]}'
    )
    for _ in range(args.repeats):
      seconds, code, last, still_running = second_run_seconds(root, env)
      print(
        f'second main on a busy workdir: exit {code} after {seconds:.2f} s (first still '
        f'running: {still_running}): {last}'
      )
    killed = os.path.join(root, 'killed')
    timed(command(killed), dict(env, PIXEL_JAX_KILL_AT='step:12'))
    resumed, result = timed(command(killed), env)
    print(
      f'resume after SIGKILL at step 12: {resumed:.1f} s (exit {result.returncode}): '
      f'{result.stdout.strip().splitlines()[-1]}'
    )
    again, result = timed(command(killed), env)
    print(f'rerun of the finished run: {again:.1f} s: {result.stdout.strip().splitlines()[-1]}')
  print(f'load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs')


if __name__ == '__main__':
  main()
