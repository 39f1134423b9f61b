"""A device's side of the federation's privacy options, on Flower's own mods.

The server chooses per run (see `server_app.ServerSettings`): client-side clipping for
central differential privacy (Flower's `DifferentialPrivacyClientSideFixedClipping` puts a
clipping norm in each train config) and secure aggregation (Flower's SecAgg+ workflow,
whose messages carry a `secaggplus_configs` record). On the device, `privacy_mod` runs
Flower's mods for what the message asks:

    SecAgg+ stage  -> flwr.client.mod.secaggplus_mod  (key exchange, masking, unmasking)
    clipping norm  -> Flower's fixedclipping_mod       (innermost: clips the update, i.e. the
                                                        new head minus the received one)
    then our train handler (which checks the received head before anything changes).

A device can also demand them (SuperNode `--node-config`): `require-secure-aggregation=true`
refuses a train message outside SecAgg+ (its update is then only ever sent masked), and
`max-clipping-norm=C` refuses one without a clipping norm <= C. What a device cannot check is
that the server adds the noise: central DP trusts the server for that.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from flwr.app import Context, Message
from flwr.client.mod import fixedclipping_mod as legacy_fixedclipping_mod
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.mod import fixedclipping_mod
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
# The config key both of Flower's client-side clipping wrappers write and both mods read.
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from tflite_transfer.runtime.errors import InvalidInputError
from tflite_transfer.runtime.federated import wire

REQUIRE_SECURE_AGGREGATION = "require-secure-aggregation"
MAX_CLIPPING_NORM = "max-clipping-norm"


@dataclasses.dataclass(frozen=True)
class DevicePolicy:
    """What this device demands of every round it trains in (from its --node-config)."""
    require_secure_aggregation: bool = False
    max_clipping_norm: float = 0.0          # 0: no demand

    @classmethod
    def from_node_config(cls, node_config: Mapping) -> "DevicePolicy":
        required = node_config.get(REQUIRE_SECURE_AGGREGATION, False)
        if isinstance(required, str):
            required = {"true": True, "false": False}.get(required.strip().lower(), required)
        try:
            norm = float(node_config.get(MAX_CLIPPING_NORM, 0.0))
        except (TypeError, ValueError):
            norm = -1.0
        if not isinstance(required, bool) or not norm >= 0.0 or norm == float("inf"):
            raise InvalidInputError(
                f"SuperNode --node-config: {REQUIRE_SECURE_AGGREGATION} must be true or false and "
                f"{MAX_CLIPPING_NORM} a finite number >= 0, got {node_config.get(REQUIRE_SECURE_AGGREGATION)!r} "
                f"and {node_config.get(MAX_CLIPPING_NORM)!r}")
        return cls(required, norm)


def privacy_mod(message: Message, context: Context, call_next) -> Message:
    """Routes a train message through Flower's SecAgg+ and clipping mods as it asks."""
    policy = DevicePolicy.from_node_config(context.node_config)
    if RECORD_KEY_CONFIGS in message.content.config_records:
        return secaggplus_mod(message, context,
                              lambda inner, ctx: _clip_if_asked(inner, ctx, call_next, policy))
    if policy.require_secure_aggregation:
        raise InvalidInputError(
            f"this device requires secure aggregation ({REQUIRE_SECURE_AGGREGATION}=true in its "
            "--node-config): the server must run with secure-aggregation=true - nothing was sent")
    return _clip_if_asked(message, context, call_next, policy)


def _clip_if_asked(message: Message, context: Context, call_next, policy: DevicePolicy) -> Message:
    configs = message.content.config_records
    config = configs.get("fitins.config", configs.get(wire.CONFIG))
    norm = None if config is None else config.get(KEY_CLIPPING_NORM)
    if norm is None:
        if policy.max_clipping_norm > 0:
            raise InvalidInputError(
                f"this device requires clipping at a norm <= {policy.max_clipping_norm} "
                f"({MAX_CLIPPING_NORM} in its --node-config); the server asked for none: run it "
                "with dp-clipping-norm > 0 - nothing was sent")
        return call_next(message, context)
    if policy.max_clipping_norm > 0 and not float(norm) <= policy.max_clipping_norm:
        raise InvalidInputError(
            f"the server's clipping norm {norm} exceeds this device's {MAX_CLIPPING_NORM} "
            f"{policy.max_clipping_norm} - nothing was sent")
    mod = legacy_fixedclipping_mod if "fitins.config" in configs else fixedclipping_mod
    return mod(message, context, call_next)
