"""The training state (step, parameters, optimiser state) and its layout on the mesh.

The state is replicated on every device of the ('data',) mesh. `abstract_state` gives its
shapes, dtypes and shardings without allocating it: the target that checkpoints are
restored into, and the out_shardings of `init_state`.
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from pixel_jax import sharding


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def create_train_state(
  rng: jax.Array, *, model: Any, tx: optax.GradientTransformation, image_shape: tuple[int, int, int]
) -> TrainState:
  """Fresh parameters and optimiser state; traced under jit with replicated out_shardings."""
  # A class-conditional model is initialised with a label (class 0).
  labels = jnp.zeros((1,), jnp.int32) if model.num_classes else None
  params = model.init(rng, jnp.zeros((1,) + tuple(image_shape), jnp.float32), labels_B=labels)[
    'params'
  ]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def _init_fn(config: ml_collections.ConfigDict, model: Any, tx: optax.GradientTransformation):
  d = config.data
  return functools.partial(
    create_train_state, model=model, tx=tx, image_shape=(d.image_size, d.image_size, d.num_channels)
  )


def abstract_state(
  config: ml_collections.ConfigDict,
  model: Any,
  tx: optax.GradientTransformation,
  mesh: jax.sharding.Mesh,
) -> Any:
  """The state's shapes, dtypes and (replicated) shardings, without allocating it."""
  shapes = jax.eval_shape(_init_fn(config, model, tx), jax.random.key(0))
  rep = sharding.replicated(mesh)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep), shapes)


def init_state(
  config: ml_collections.ConfigDict,
  model: Any,
  tx: optax.GradientTransformation,
  mesh: jax.sharding.Mesh,
) -> TrainState:
  """Initialises the state from config.seed directly in its replicated layout."""
  shardings = jax.tree.map(lambda s: s.sharding, abstract_state(config, model, tx, mesh))
  return jax.jit(_init_fn(config, model, tx), out_shardings=shardings)(jax.random.key(config.seed))
