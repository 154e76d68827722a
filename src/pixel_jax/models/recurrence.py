"""The LSTM recurrence both PixelRNN layers scan, with a hand-written backward pass.

    gates_t = gates_is[t] + state_to_state(kernel, h_{t-1})
    (h_t, c_t) = lstm_cell(gates_t, c_{t-1})          (SPEC.md section 3)
    where hold[t]: (h_t, c_t) = (h0, c0)               (Diagonal BiLSTM padding cells)

The Row LSTM scans it over rows, the Diagonal BiLSTM over skewed columns; each supplies
its state-to-state convolution as `state_to_state`, a function linear in each argument.

Why not plain autodiff of `jax.lax.scan`: its transpose stores every intermediate of the
step (each gate's sigmoid, tanh(c), the hold mask: 15 stacked residuals for the Diagonal
BiLSTM) and writes them one operation at a time. The steps are tiny (a [448, 16] x
[16, 128] product at the MNIST size), so on CPU a step costs what its number of operations
costs far more than its FLOPs. `lstm_scan` keeps only h and c; the backward scan recomputes
the gates from h_{t-1} and emits each step's gate cotangents (the input-to-state
gradient). Measured at the MNIST size on 2 CPU cores: a Diagonal BiLSTM training step
~24% faster (benchmarks/bench_models.py). Computing the kernel gradient after the loop as
one vmapped pullback was slower than accumulating it per step (XLA materialised a [T, ...,
8h] intermediate), so it is accumulated in the carry. Tests compare everything with
autodiff of the plain scan (tests/test_layers.py: CustomBackwardTest).
"""

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from pixel_jax.models import layers

StateToState = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


def lstm_scan(state_to_state: StateToState, kernel: jnp.ndarray, gates_is_Tx4h: jnp.ndarray,
              h0: jnp.ndarray, c0: jnp.ndarray, hold_T: Optional[np.ndarray] = None,
              custom_backward: bool = True) -> jnp.ndarray:
  """All hidden states h_t, stacked on a leading step axis: [T, *h0.shape].

  Args:
    state_to_state: (kernel, h_prev) -> pre-activations shaped like gates_is[t]; linear.
    kernel: its parameters (any array; differentiated).
    gates_is_Tx4h: input-to-state pre-activations per step, [T, ..., 4h] ([o, f, i, g]).
    h0, c0: the initial state, float32, shaped like one step's state [..., h].
    hold_T: optional boolean numpy array broadcastable to [T, ...state]: where True the
      state is held at (h0, c0) for that step. A constant, never differentiated.
  """
  hold = None if hold_T is None else np.asarray(hold_T, dtype=bool)

  def forward(kernel, gates_is, h0, c0):
    def step(carry, xs):
      h_prev, c_prev = carry
      gates_is_t, hold_t = xs
      gates = gates_is_t.astype(jnp.float32) + state_to_state(kernel, h_prev).astype(
          jnp.float32)
      h, c = layers.lstm_cell(gates, c_prev)
      if hold_t is not None:
        h, c = jnp.where(hold_t, h0, h), jnp.where(hold_t, c0, c)
      return (h, c), (h, c)
    _, (hs, cs) = jax.lax.scan(step, (h0, c0), (gates_is, hold))
    return hs, cs

  if not custom_backward:
    return forward(kernel, gates_is_Tx4h, h0, c0)[0]

  @jax.custom_vjp
  def run(kernel, gates_is, h0, c0):
    return forward(kernel, gates_is, h0, c0)[0]

  def run_fwd(kernel, gates_is, h0, c0):
    hs, cs = forward(kernel, gates_is, h0, c0)
    return hs, (kernel, gates_is, h0, c0, hs, cs)

  def run_bwd(residuals, dhs):
    kernel, gates_is, h0, c0, hs, cs = residuals
    hs_prev = jnp.concatenate([h0[None], hs[:-1]])
    cs_prev = jnp.concatenate([c0[None], cs[:-1]])

    def step(carry, xs):
      dkernel, dh, dc, dh0, dc0 = carry
      gates_is_t, hold_t, h_prev, c_prev, dh_out = xs
      from_state, pull = jax.vjp(state_to_state, kernel, h_prev)
      gates = gates_is_t.astype(jnp.float32) + from_state.astype(jnp.float32)
      o, f, i, g = jnp.split(gates, 4, axis=-1)
      so, sf, si, tg = jax.nn.sigmoid(o), jax.nn.sigmoid(f), jax.nn.sigmoid(i), jnp.tanh(g)
      tc = jnp.tanh(sf * c_prev + si * tg)
      dh = dh + dh_out
      if hold_t is not None:  # A held cell's state is (h0, c0): its cotangent goes there.
        dh0, dc0 = dh0 + jnp.where(hold_t, dh, 0.0), dc0 + jnp.where(hold_t, dc, 0.0)
        dh, dc = jnp.where(hold_t, 0.0, dh), jnp.where(hold_t, 0.0, dc)
      dc = dc + dh * so * (1.0 - tc * tc)
      dgates = jnp.concatenate([dh * tc * so * (1.0 - so), dc * c_prev * sf * (1.0 - sf),
                                dc * tg * si * (1.0 - si), dc * si * (1.0 - tg * tg)], axis=-1)
      dkernel_t, dh_prev = pull(dgates.astype(from_state.dtype))
      return (dkernel + dkernel_t, dh_prev.astype(jnp.float32), dc * sf, dh0, dc0), dgates

    zeros = jnp.zeros_like(h0)
    (dkernel, dh, dc, dh0, dc0), dgates = jax.lax.scan(
        step, (jnp.zeros_like(kernel), zeros, zeros, zeros, zeros),
        (gates_is, hold, hs_prev, cs_prev, dhs.astype(jnp.float32)), reverse=True)
    return dkernel, dgates.astype(gates_is.dtype), dh0 + dh, dc0 + dc

  run.defvjp(run_fwd, run_bwd)
  return run(kernel, gates_is_Tx4h, h0, c0)
