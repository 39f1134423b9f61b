"""The privacy rows of the federated benchmark: which federations run, and what epsilon the
differential-privacy settings give.

Each row is FedAvg with one of the server's privacy options (runtime/federated/
server_app.py): client-side clipping alone (noise 0: what clipping costs), clipping with
Flower's Gaussian noise at each noise multiplier, Flower's SecAgg+ alone, and SecAgg+ with
clipping and noise. Epsilon is Flower's own accountant (`flwr.supercore.privacy_accounting.
RdpAccountant`, Google's dp-accounting behind it) for client-level DP with every client in
every round (no sampling amplification: the benchmark samples all clients), one Gaussian
release per round, at the stated delta. Needs `pip install --no-deps dp-accounting==0.6.0`;
without it epsilon is reported as not computed.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    strategy: str
    overrides: dict                    # ServerSettings fields
    noise_multiplier: float | None     # None: no differential privacy
    clipping_norm: float | None


def privacy_variants(clipping_norm: float, noise_multipliers, num_shares: int, threshold: int) -> list[Variant]:
    secagg = {"secure_aggregation": True, "secagg_num_shares": num_shares,
              "secagg_reconstruction_threshold": threshold}
    rows = [Variant("fedavg + clipping", "fedavg", {"dp_clipping_norm": clipping_norm}, 0.0, clipping_norm)]
    for z in noise_multipliers:
        rows.append(Variant(f"fedavg + DP z={z:g}", "fedavg",
                            {"dp_clipping_norm": clipping_norm, "dp_noise_multiplier": z}, z, clipping_norm))
    rows.append(Variant("SecAgg+", "fedavg", dict(secagg), None, None))
    z = noise_multipliers[0]
    rows.append(Variant(f"SecAgg+ + DP z={z:g}", "fedavg",
                        {**secagg, "dp_clipping_norm": clipping_norm, "dp_noise_multiplier": z}, z, clipping_norm))
    return rows


def epsilon(noise_multiplier: float | None, rounds: int, clients: int, delta: float) -> float | str | None:
    """Client-level epsilon after `rounds` full-participation Gaussian releases (inf for no
    noise, None without differential privacy, a note when dp-accounting is missing)."""
    if noise_multiplier is None:
        return None
    if noise_multiplier == 0:
        return float("inf")
    try:
        from flwr.supercore.privacy_accounting import (  # noqa: PLC0415
            GaussianPrivacyEvent, NeighboringRelation, PrivacyConfig, SamplingMethod)
        from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant  # noqa: PLC0415

        accountant = RdpAccountant(PrivacyConfig(
            target_delta=delta, population_size=clients, neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION))
        accountant.compose(GaussianPrivacyEvent(noise_multiplier, clients, clients), count=rounds)
        return float(accountant.get_privacy_spent().epsilon)
    except ImportError:
        return "not computed (pip install --no-deps dp-accounting==0.6.0)"


def rdp_epsilon_bound(noise_multiplier: float, rounds: int, delta: float) -> float:
    """The textbook bound, as a cross-check of the accountant: the Gaussian mechanism of
    noise multiplier z has Renyi DP rounds * alpha / (2 z^2) at order alpha; converted with
    eps = rdp + log(1/delta) / (alpha - 1), minimized over alpha (Mironov 2017, Prop. 3)."""
    import numpy as np  # noqa: PLC0415

    alphas = np.linspace(1.01, 512, 200_000)
    return float(np.min(rounds * alphas / (2 * noise_multiplier ** 2) + np.log(1 / delta) / (alphas - 1)))
