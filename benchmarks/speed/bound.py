"""The physical limit of a train step: the bytes it must move and the arithmetic it must do,
against this machine's copy bandwidth and matmul rate measured in the same run.

Bytes (float32) per dense layer of W = units x inputs (+ bias), as the issue defines them:
the forward pass reads W once, backprop writes the gradient once, the update reads the
gradient, the weights and every optimizer slot and writes the weights and every slot:
  SGD  : 1 (forward) + 1 (gradient) + 1 + 1 (update reads G, W) + 1 (writes W) = 5 |W|
  Adam : 1 + 1 + 4 (reads G, W, m, v) + 3 (writes W, m, v)                     = 9 |W|
Activations (batch x features) are left out: under 1 % of these at every row swept.
Arithmetic: 2 x batch x |W| flops for the forward pass and as many for the weight gradient,
plus as many again for the input gradient of every layer but the first.
The bound is max(bytes / bandwidth, flops / matmul rate) (a roofline); bandwidth is taken
at the working set's size (all of W, G and slots fit this machine's L3 at 1000 classes, so a
DRAM figure would be a looser bound), and the DRAM figure is reported beside it.
"""

from __future__ import annotations

import dataclasses

PASSES = {"sgd": (5, "W read fwd, G write, G+W read, W write"),
          "adam": (9, "W read fwd, G write, G+W+m+v read, W+m+v write")}
DRAM_COPY_BYTES = 256 << 20


@dataclasses.dataclass(frozen=True)
class StepCost:
    weight_bytes: int          # all kernels and biases
    traffic_bytes: int         # what a step must move
    working_set_bytes: int     # W + G + slots, distinct arrays a step touches
    flops: int

    def bound_us(self, bandwidth_bytes_per_s: float, flops_per_s: float) -> float:
        return 1e6 * max(self.traffic_bytes / bandwidth_bytes_per_s, self.flops / flops_per_s)


def step_cost(layers, optimizer: str, batch: int) -> StepCost:
    weights, flops = 0, 0
    for index, layer in enumerate(layers):
        units, inputs = layer["shape"]
        size = units * inputs + units
        weights += size
        flops += 2 * batch * units * inputs * (2 if index == 0 else 3)
    passes = PASSES[optimizer][0]
    slots = {"sgd": 0, "adam": 2}[optimizer]
    return StepCost(4 * weights, 4 * weights * passes, 4 * weights * (2 + slots), flops)


def copy_sizes(costs) -> list[int]:
    """Copy sizes to measure: half of each working set (a copy touches source + target), and DRAM."""
    return sorted({max(4096, c.working_set_bytes // 2 // 4096 * 4096) for c in costs} | {DRAM_COPY_BYTES})


def bandwidth_for(cost: StepCost, measured: dict[str, float]) -> float:
    size = max(4096, cost.working_set_bytes // 2 // 4096 * 4096)
    return measured[str(size)]
