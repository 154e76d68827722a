"""A class-conditional run end to end: training on labelled batches, the conditional NLL,
sampling a classes x samples grid, conditioned completion and marginal scoring."""

import math

import jax
import numpy as np
from PIL import Image
import pytest

from experiments import tiny
from pixel_jax import evaluate
from pixel_jax import evaluation
from pixel_jax import sample as sample_cli
from pixel_jax import score
from pixel_jax import train


@pytest.mark.slow
def test_train_evaluate_sample_and_score_with_classes(tmp_path):
  config = tiny.get_config()
  config.data.name = 'mnist'  # Offline: the bundled digits and their labels.
  config.model.num_classes = 10
  config.train.update(num_steps=10, eval_every=10, sample_every=10, checkpoint_every=10)
  config.eval.max_examples = 64
  workdir = str(tmp_path / 'run')
  state, summary = train.train_and_evaluate(config, workdir)
  assert summary['train_loss'] < summary['initial_train_loss']
  assert (tmp_path / 'run' / 'samples' / 'step_10.png').stat().st_size > 0

  # The conditional NLL needs the labels: the same images under other labels score worse
  # on average only after training, so check the mechanics: labels are used and required.
  result = evaluate.evaluate(None, workdir, split='validation')
  assert result['conditional'] and result['num_examples'] == 64
  assert result['loss'] == pytest.approx(summary['eval_loss'], rel=1e-5)

  # Sampling: --labels=0,1,2 with 2 samples each is a 3 x 2 grid, labels saved.
  out = tmp_path / 'sampled'
  written = sample_cli.run_sampling(
    workdir, num_samples=2, labels='0,1,2', output_dir=str(out), scale=1, complete='validation'
  )
  np.testing.assert_array_equal(np.load(written['labels.npy']), [0, 0, 1, 1, 2, 2])
  assert np.load(written['samples.npy']).shape == (6, 8, 8, 1)
  grid = np.asarray(Image.open(written['samples.png']))
  assert grid.shape[:2] == (3 * 9 + 1, 2 * 9 + 1)
  completions = np.load(written['completion.npy'])
  originals = np.load(written['originals.npy'])
  np.testing.assert_array_equal(completions[:, :4], originals[:, :4])  # Kept rows.
  np.save(tmp_path / 'two.npy', originals)
  for bad, match in (
    ('0,10', r'classes must lie in \[0, 10\)'),
    ('a,b', 'comma-separated'),
    ('1,2,3', 'give one, or one per image'),
    (None, 'has no labels'),
  ):
    with pytest.raises(sample_cli.SampleError, match=match):
      sample_cli.run_sampling(
        workdir, num_samples=2, labels=bad, output_dir=str(out), complete=str(tmp_path / 'two.npy')
      )

  # Scoring: the marginal NLL over a uniform class prior, and the most likely class.
  digits = np.random.default_rng(0).integers(0, 2, (3, 8, 8)).astype(np.uint8)
  np.save(tmp_path / 'digits.npy', digits)
  rows, run = score.score_images(workdir, str(tmp_path / 'digits.npy'))
  params = jax.device_get(run.state.params)
  per_class = np.stack(
    [
      np.asarray(
        evaluation.nll_fn(params, digits[..., None], np.full(3, y, np.int32), model=run.model)
      )
      for y in range(10)
    ]
  )
  expected = -np.log(np.exp(-per_class.astype(np.float64)).mean(axis=0))
  np.testing.assert_allclose([r['nll_nats'] for r in rows], expected, rtol=1e-4)
  assert [r[score.CLASS_FIELD] for r in rows] == list(per_class.argmin(axis=0))
  assert all(
    r['nll_nats'] <= per_class[:, i].min() + math.log(10) + 1e-3 for i, r in enumerate(rows)
  )
  del state
