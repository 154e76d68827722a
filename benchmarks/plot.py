"""Draws docs/figures/*.png from docs/benchmarks.json (run_all.py calls it after measuring).

  python benchmarks/plot.py                                   # redraw from the stored JSON
  python benchmarks/plot.py --json=/tmp/b.json --figures=/tmp/figs

Figures: scaling.png (step time vs image size and vs depth), scan_vs_unrolled.png
(nn.scan vs unrolled layers: step and compile time), utilisation.png (achieved vs
matmul FLOP/s per model and size), sampling.png (naive vs cached images/s).
time_to_quality.py draws its own figure with plot_time_to_quality.
Redrawing needs no measurement, so a figure always matches the JSON committed beside it.
"""

import argparse
import json
import os

import matplotlib

matplotlib.use('Agg')  # Files only; no display on a build machine.
from matplotlib import ticker  # pylint: disable=g-import-not-at-top,wrong-import-position
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLORS = {'row_lstm': 'tab:blue', 'diagonal_bilstm': 'tab:orange', 'pixelcnn': 'tab:green'}
LABELS = {'row_lstm': 'Row LSTM', 'diagonal_bilstm': 'Diagonal BiLSTM', 'pixelcnn': 'PixelCNN'}


def _plain_log_axes(ax, xs) -> None:
  """Log-log axes labelled with the measured x values and plain numbers, not 10^k."""
  ax.set_xticks(sorted(set(xs)))
  for axis in (ax.xaxis, ax.yaxis):
    axis.set_major_formatter(ticker.FormatStrFormatter('%g'))
    axis.set_minor_formatter(ticker.NullFormatter())
  ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))


def _conditions_text(section: dict) -> str:
  c = section.get('conditions', {})
  load = c.get('load_average', [float('nan')])[0]
  return (
    f'{c.get("time_utc", "?")[:16]} UTC, {c.get("cpu_count", "?")} CPU cores, 1-min load {load:.1f}'
  )


def plot_scaling(scaling: dict, path: str) -> None:
  """Step time vs image side (fixed depth) and vs depth (fixed side), log-log."""
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for model in COLORS:
    rows = [r for r in scaling['size'] if r['model'] == model]
    if rows:
      axes[0].plot(
        [r['image_size'] for r in rows],
        [1e3 * r['step_s'] for r in rows],
        'o-',
        color=COLORS[model],
        label=LABELS[model],
      )
    for scan, style in ((False, 'o-'), (True, 's--')):
      rows = [r for r in scaling['depth'] if r['model'] == model and r['scan_layers'] == scan]
      if rows:
        axes[1].plot(
          [r['layers'] for r in rows],
          [1e3 * r['step_s'] for r in rows],
          style,
          color=COLORS[model],
          label=f'{LABELS[model]} ({"nn.scan" if scan else "unrolled"})',
        )
  axes[0].set(
    xscale='log',
    yscale='log',
    xlabel='image side n (n x n x 1)',
    ylabel='training step (ms)',
    title=f'vs image size ({scaling.get("size_sweep_layers", "?")} layers)',
  )
  axes[1].set(
    xscale='log',
    yscale='log',
    xlabel='layers',
    ylabel='training step (ms)',
    title=f'vs depth ({scaling.get("depth_sweep_image_size", "?")}x'
    f'{scaling.get("depth_sweep_image_size", "?")}x1)',
  )
  _plain_log_axes(axes[0], [r['image_size'] for r in scaling['size']])
  _plain_log_axes(axes[1], [r['layers'] for r in scaling['depth']])
  for ax in axes:
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=7)
  fig.suptitle(f'h=16, batch 16, binary; CPU: {_conditions_text(scaling)}', fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_scan(scaling: dict, path: str) -> None:
  """nn.scan over layers vs unrolled layers: step time and compile time vs depth."""
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for model in COLORS:
    for scan, style in ((False, 'o-'), (True, 's--')):
      rows = [r for r in scaling['depth'] if r['model'] == model and r['scan_layers'] == scan]
      if not rows:
        continue
      label = f'{LABELS[model]} ({"nn.scan" if scan else "unrolled"})'
      depths = [r['layers'] for r in rows]
      axes[0].plot(
        depths, [1e3 * r['step_s'] for r in rows], style, color=COLORS[model], label=label
      )
      axes[1].plot(depths, [r['compile_s'] for r in rows], style, color=COLORS[model], label=label)
  axes[0].set(xlabel='layers', ylabel='training step (ms)', title='step time', yscale='log')
  axes[1].set(xlabel='layers', ylabel='compile (s)', title='compile time')
  _plain_log_axes(axes[0], [r['layers'] for r in scaling['depth']])
  axes[0].set_xscale('linear')
  for ax in axes:
    ax.set_xticks(sorted({r['layers'] for r in scaling['depth']}))
  for ax in axes:
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
  size = scaling.get('depth_sweep_image_size', '?')
  fig.suptitle(
    f'config.model.scan_layers True vs False; {size}x{size}x1, h=16, batch 16; '
    f'CPU: {_conditions_text(scaling)}',
    fontsize=9,
  )
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_utilisation(models_section: dict, path: str) -> None:
  """Achieved FLOP/s of each training step beside the same run's matmul FLOP/s."""
  rows = models_section['rows']
  fig, ax = plt.subplots(figsize=(8, 4))
  labels = [f'{LABELS[r["model"]]}\n{r["size"]}' for r in rows]
  xs = range(len(rows))
  ax.bar(
    [x - 0.2 for x in xs],
    [r['achieved_flop_s'] / 1e9 for r in rows],
    0.4,
    color=[COLORS[r['model']] for r in rows],
    label='training step (achieved)',
  )
  ax.bar(
    [x + 0.2 for x in xs],
    [r['matmul_flop_s'] / 1e9 for r in rows],
    0.4,
    color='lightgrey',
    label='2048x2048 fp32 matmul (same process)',
  )
  for x, r in zip(xs, rows):
    ax.text(
      x - 0.2,
      r['achieved_flop_s'] / 1e9,
      f'{100 * r["utilisation"]:.0f}%',
      ha='center',
      va='bottom',
      fontsize=8,
    )
  ax.set_xticks(list(xs), labels, fontsize=7)
  ax.set(
    ylabel='GFLOP/s',
    title='Utilisation: achieved / matmul FLOP/s (FLOPs: loops unrolled, XLA cost analysis)',
  )
  ax.title.set_fontsize(9)
  ax.legend(fontsize=7)
  ax.grid(True, axis='y', alpha=0.3)
  fig.text(0.01, 0.01, f'CPU: {_conditions_text(models_section)}', fontsize=7)
  fig.tight_layout(rect=(0, 0.03, 1, 1))
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_sampling(sampling: dict, path: str) -> None:
  """Naive (extrapolated) vs cached sampler images/s, log scale."""
  rows = sampling['rows']
  fig, ax = plt.subplots(figsize=(8, 4))
  xs = range(len(rows))
  labels = [
    f'{LABELS[r["model"]]}\n{"x".join(map(str, r["shape"]))} {r["layers"]}x{r["hidden"]}'
    for r in rows
  ]
  ax.bar(
    [x - 0.2 for x in xs],
    [r['naive_images_per_s'] for r in rows],
    0.4,
    color='lightgrey',
    label='naive (one forward pass per sub-pixel)',
  )
  ax.bar(
    [x + 0.2 for x in xs],
    [r['cached_images_per_s'] for r in rows],
    0.4,
    color=[COLORS[r['model']] for r in rows],
    label='cached',
  )
  for x, r in zip(xs, rows):
    ax.text(
      x + 0.2,
      r['cached_images_per_s'],
      f'{r["speedup"]:.0f}x',
      ha='center',
      va='bottom',
      fontsize=8,
    )
  ax.set_xticks(list(xs), labels, fontsize=7)
  ax.set(yscale='log', ylabel='images/s (batch 16)', title='Sampling speed')
  ax.legend(fontsize=7)
  ax.grid(True, axis='y', which='both', alpha=0.3)
  fig.text(0.01, 0.01, f'CPU: {_conditions_text(sampling)}', fontsize=7)
  fig.tight_layout(rect=(0, 0.03, 1, 1))
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_time_to_quality(curves: list[dict], thresholds, conditions: dict, path: str) -> None:
  """Test NLL (nats) against training minutes and against steps, one line per run.

  `curves`: time_to_quality.read_curve's dicts (name, model, steps, minutes, nll, ...);
  `conditions`: {name: {'before': run_all.conditions(), 'after': ...}} of the runs that
  recorded them (the CPU and load go under the figure).
  """
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
  for c in curves:
    style = dict(color=COLORS.get(c['model']), marker='o', markersize=3)
    label = f'{LABELS.get(c["model"], c["model"])} {c["layers"]} x {c["hidden"]}'
    axes[0].plot(c['minutes'], c['nll'], label=label, **style)
    axes[1].plot(c['steps'], c['nll'], label=label, **style)
  nlls = [x for c in curves for x in c['nll']]
  if nlls:  # The thresholds' region; early evaluations far above it leave through the top.
    near = max(thresholds) + 15
    top = min(max(nlls), near) if min(nlls) < near else max(nlls)
    axes[0].set_ylim(min(min(nlls), min(thresholds)) - 1, top + 1)
  for ax in axes:
    ax.set_xlim(left=0)
    for t in thresholds:
      ax.axhline(t, color='grey', linestyle='--', linewidth=0.8)
    ax.grid(True, alpha=0.3)
  splits = sorted({c['eval_split'] for c in curves})
  batches = sorted({c['batch'] for c in curves})
  axes[0].set(
    xlabel='training time (minutes; evaluation and checkpoint pauses excluded)',
    ylabel=f'NLL on {", ".join(splits)} (nats)',
    title='vs training time',
  )
  axes[1].set(xlabel=f'training steps (batch {", ".join(map(str, batches))})', title='vs steps')
  axes[0].legend(fontsize=8)
  lines = []
  for name, c in conditions.items():
    before, after = c['before'], c['after']
    lines.append(
      f'{name}: {before["time_utc"][:16]} UTC, {before["cpu_count"]} cores '
      f'({before["cpu"][:40]}), 1-min load {before["load_average"][0]:.1f} -> '
      f'{after["load_average"][0]:.1f}'
    )
  fig.suptitle('Time to quality on the offline MNIST protocol', fontsize=10)
  if lines:
    fig.text(0.01, 0.01, '\n'.join(lines), fontsize=6, va='bottom')
  fig.tight_layout(rect=(0, 0.02 + 0.025 * len(lines), 1, 1))
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_all(result: dict, figures: str) -> list[str]:
  """Every figure whose section is in `result`; returns the paths written."""
  os.makedirs(figures, exist_ok=True)
  written = []
  jobs = [
    ('scaling', 'scaling.png', plot_scaling),
    ('scaling', 'scan_vs_unrolled.png', plot_scan),
    ('models', 'utilisation.png', plot_utilisation),
    ('sampling', 'sampling.png', plot_sampling),
  ]
  for section, name, fn in jobs:
    if result.get(section):
      path = os.path.join(figures, name)
      fn(result[section], path)
      written.append(path)
  return written


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--json', default=os.path.join(REPO, 'docs/benchmarks.json'))
  parser.add_argument('--figures', default=os.path.join(REPO, 'docs/figures'))
  args = parser.parse_args()
  with open(args.json) as f:
    result = json.load(f)
  for path in plot_all(result, args.figures):
    print(f'wrote {path}')


if __name__ == '__main__':
  main()
