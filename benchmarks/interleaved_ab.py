"""Old vs new speed, tightly interleaved call by call: cached sampling or the training step.

  python benchmarks/interleaved_ab.py --a=/path/to/old_checkout --b=. --what=sampling
  python benchmarks/interleaved_ab.py --a=OLD --b=. --what=train --calls=30

For each model, one worker process per checkout (started in that checkout's root with
PYTHONPATH=<checkout>/src, so it runs that revision's code and its benchmarks' network
configs) builds the MNIST-size network and compiles the timed function once. The driver
then asks the two workers for one timed call at a time in ABBA order, so both revisions
see the same load, call for call: on a shared machine whose load drifts over minutes this
compares far more tightly than whole benchmark runs in turn.

  sampling: one batch of `--batch` MNIST images from sampling.sample (the cached sampler),
            the network of bench_sampling.make_config (the MNIST experiment configs).
  train:    one training step of bench_models.build_step at the MNIST size (batch 16): the
            training loop's own step (train.make_train_step); older checkouts, a copy of it.

Both workers must build the same network: each reports its config's model and data
fields, and the driver stops with the fields that differ (the shipped configs change over
time, e.g. skip connections). `--set=model.skip=True` (repeatable) sets a field in both
workers' configs after they are built, so both revisions run one network.

Prints, per model, each revision's median seconds per call and the median of the
per-pair ratios B / A (> 1: B is slower), with the ratios' interquartile range.
"""

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Optional

MODELS = ('row_lstm', 'diagonal_bilstm', 'pixelcnn')


def apply_settings(config, settings: list[str]) -> None:
  """Sets each 'a.b=value' of `settings` in `config` (value a Python literal, else a string)."""
  for setting in settings:
    path, _, text = setting.partition('=')
    *parents, field = path.split('.')
    node = config
    for name in parents:
      node = getattr(node, name)
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    setattr(node, field, value)


def network_fields(config) -> dict[str, str]:
  """The scalar fields of config.model and config.data, as text: what the network is."""
  return {
    f'{section}.{key}': str(value)
    for section in ('model', 'data')
    for key, value in getattr(config, section).items()
    if isinstance(value, (bool, int, float, str))
  }


def worker(what: str, model_name: str, batch: int, settings: list[str]) -> None:
  """Builds and compiles one timed call, then times one call per 'go' line on stdin; its
  'ready' line carries the network's fields (network_fields) as JSON."""
  sys.path.insert(0, os.path.join(os.getcwd(), 'benchmarks'))
  import jax  # pylint: disable=import-outside-toplevel

  if what == 'sampling':
    import bench_sampling  # pylint: disable=import-outside-toplevel
    from pixel_jax import models  # pylint: disable=import-outside-toplevel
    from pixel_jax import sampling  # pylint: disable=import-outside-toplevel

    args = argparse.Namespace(cifar_layers=4, cifar_hidden=16, cifar_out_hidden=64)
    config = bench_sampling.make_config(model_name, 'mnist', args)
    apply_settings(config, settings)
    model = models.get_model(config)
    d = config.data
    variables = jax.jit(model.init)(
      jax.random.key(0),
      jax.numpy.zeros((1, d.image_size, d.image_size, d.num_channels)),
    )
    keys = iter(range(1, 1 << 30))
    call = lambda: sampling.sample(model, variables, jax.random.key(next(keys)), batch)
  else:
    import bench_models  # pylint: disable=import-outside-toplevel

    config = bench_models.make_config(model_name, 'mnist', batch)
    apply_settings(config, settings)
    built = bench_models.build_step(config)
    if len(built) == 3:  # The training loop's own step: (state, batch, labels) -> (state, metrics).
      step, train_state, images = built
      state = [train_state]

      def call():
        state[0], metrics = step(state[0], images, None)
        return metrics
    else:  # A checkout from before: a copy of the step on (params, opt_state, batch).
      step, params, opt_state, images = built
      state = [params, opt_state]

      def call():
        state[0], state[1], loss = step(state[0], state[1], images)
        return loss

  serve(lambda: jax.block_until_ready(call()), json.dumps(network_fields(config)))


def serve(call: Callable[[], Any], info: str = '') -> None:
  """A worker's loop: one untimed `call` (compilation, warm-up), then 'ready' (and `info`)
  on stdout, then one timed call per line read from stdin, its seconds on stdout. `call`
  must return only once its work is done (block on its result)."""
  call()
  print(f'ready {info}'.rstrip(), flush=True)
  for _ in sys.stdin:
    start = time.perf_counter()
    call()
    print(time.perf_counter() - start, flush=True)


def start_worker(argv: list[str], cwd: Optional[str] = None, env: Optional[dict] = None):
  """Starts a worker process (`serve` on its side) and waits until it is ready: (process,
  the text it sent after 'ready')."""
  process = subprocess.Popen(
    argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
  )
  line = process.stdout.readline().strip()
  if line.split(' ')[0] != 'ready':
    raise SystemExit(f'A worker ({" ".join(argv[1:])}) failed to start; see its error above.')
  return process, line[len('ready') :].strip()


def time_interleaved(workers: dict[str, Any], calls: int) -> dict[str, list[float]]:
  """`calls` timed calls of each of two ready workers, in ABBA order (A: the first);
  closes them. Seconds per call, per worker name."""
  times: dict[str, list[float]] = {name: [] for name in workers}
  order = list(workers)
  for i in range(calls):
    for name in order if i % 2 == 0 else order[::-1]:
      workers[name].stdin.write('go\n')
      workers[name].stdin.flush()
      times[name].append(float(workers[name].stdout.readline()))
  for w in workers.values():
    w.stdin.close()
    w.wait()
  return times


def ratio_quartiles(a: list[float], b: list[float]) -> tuple[float, float, float]:
  """The per-pair ratios b / a: (median, first quartile, third quartile)."""
  ratios = [y / x for x, y in zip(a, b)]
  q = statistics.quantiles(ratios, n=4)
  return statistics.median(ratios), q[0], q[2]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--a', help='The reference checkout (old).')
  parser.add_argument('--b', help='The checkout compared with it (new).')
  parser.add_argument('--what', choices=('sampling', 'train'), default='sampling')
  parser.add_argument('--models', default=','.join(MODELS))
  parser.add_argument('--calls', type=int, default=20, help='Timed calls per revision.')
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument(
    '--set',
    action='append',
    default=[],
    help='A config field set in both workers, e.g. --set=model.skip=True (repeatable).',
  )
  parser.add_argument('--worker', default='', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    worker(args.what, args.worker, args.batch, args.set)
    return
  if not (args.a and args.b):
    parser.error('give both checkouts: --a=OLD --b=NEW')
  checkouts = {'A': os.path.abspath(args.a), 'B': os.path.abspath(args.b)}
  print(
    f'{args.what}: A = {checkouts["A"]}, B = {checkouts["B"]}, {args.calls} calls '
    f'each, ABBA; seconds per call (batch {args.batch}); load {os.getloadavg()[0]:.1f}'
    + (f'; set {" ".join(args.set)}' if args.set else '')
  )
  print(f'{"model":16s} {"A s":>9s} {"B s":>9s} {"B/A":>6s}  B/A quartiles')
  for name in args.models.split(','):
    started = {
      rev: start_worker(
        [
          sys.executable,
          os.path.abspath(__file__),
          f'--what={args.what}',
          f'--batch={args.batch}',
          f'--worker={name}',
          *(f'--set={setting}' for setting in args.set),
        ],
        cwd=root,
        env={**os.environ, 'PYTHONPATH': os.path.join(root, 'src')},
      )
      for rev, root in checkouts.items()
    }
    workers = {rev: process for rev, (process, _) in started.items()}
    fields = {rev: json.loads(info) for rev, (_, info) in started.items()}
    differ = [
      f'{key} {fields["A"][key]} vs {fields["B"][key]}'
      for key in sorted(fields['A'].keys() & fields['B'].keys())
      if fields['A'][key] != fields['B'][key]
    ]
    if differ:
      for process in workers.values():
        process.kill()
      raise SystemExit(
        f'The two {name} networks differ ({", ".join(differ)}); make them equal with '
        '--set=FIELD=VALUE.'
      )
    times = time_interleaved(workers, args.calls)
    ratio, q1, q3 = ratio_quartiles(times['A'], times['B'])
    print(
      f'{name:16s} {statistics.median(times["A"]):9.4f} '
      f'{statistics.median(times["B"]):9.4f} {ratio:6.3f}  '
      f'{q1:.3f}..{q3:.3f}  (load {os.getloadavg()[0]:.1f})',
      flush=True,
    )


if __name__ == '__main__':
  main()
