"""A Grid that measures what a federation sends, and refuses replies from other models.

It wraps the Grid Flower hands the ServerApp and is passed to Flower's own strategy or
workflow unchanged in behaviour, except that (1) outgoing head weights are put in the
model's dtypes, (2) every message's serialized size (Flower's object encoding: what the Fleet
API carries, without HTTP/TLS framing) is counted per node and direction, and (3) a reply
whose `model-fingerprint` differs from the server's model is dropped before aggregation and
recorded as refused, as are error replies (a device refusing the federation's model or a
privacy demand). Both message layouts (`wire.py`) are screened; SecAgg+'s key-exchange
replies carry no weights and pass. A dropped reply is, to Flower's SecAgg+ workflow, a
device that dropped out: its masks are removed with the other devices' key shares.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Iterable

from flwr.app import Message
from flwr.serverapp import Grid

from tflite_transfer.runtime.federated import wire
from tflite_transfer.runtime.federated.global_model import GlobalModel


def wire_bytes(item) -> int:
    """Serialized size of a Flower message or record, children included."""
    return len(item.deflate()) + sum(wire_bytes(child) for child in (item.children or {}).values())


@dataclasses.dataclass(frozen=True)
class Refusal:
    node_id: int
    message_type: str
    reason: str


class MeasuringGrid(Grid):
    def __init__(self, grid: Grid, global_model: GlobalModel):
        self._grid, self._global_model = grid, global_model
        self.sent = collections.Counter()        # node id -> bytes sent to it since the last take()
        self.received = collections.Counter()    # node id -> bytes received from it
        self.refusals: list[Refusal] = []

    # Delegated unchanged.
    def set_run(self, run) -> None:
        self._grid.set_run(run)

    @property
    def run(self):
        return self._grid.run

    def create_message(self, *args, **kwargs) -> Message:
        return self._grid.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self._grid.get_node_ids()

    def get_nodes(self):
        return self._grid.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = [self._conform(message) for message in messages]
        for message in messages:
            self.sent[message.metadata.dst_node_id] += wire_bytes(message)
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._screen(self._grid.pull_messages(message_ids))

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = [self._conform(message) for message in messages]
        for message in messages:
            self.sent[message.metadata.dst_node_id] += wire_bytes(message)
        return self._screen(self._grid.send_and_receive(messages, timeout=timeout))

    def take_traffic(self) -> tuple[dict[int, int], dict[int, int]]:
        """Bytes sent to and received from each node since the last call."""
        sent, received = dict(self.sent), dict(self.received)
        self.sent.clear()
        self.received.clear()
        return sent, received

    def _conform(self, message: Message) -> Message:
        if message.has_content():
            wire.conform_outgoing(message.content, self._global_model.metadata)
        return message

    def _screen(self, replies: Iterable[Message]) -> list[Message]:
        kept = []
        for reply in replies:
            node = reply.metadata.src_node_id
            self.received[node] += wire_bytes(reply)
            if reply.has_error():
                self.refusals.append(Refusal(node, reply.metadata.message_type, reply.error.reason))
                continue
            if wire.carries_results(reply.content):
                reason = refusal_reason(wire.reply_fingerprint(reply.content),
                                        self._global_model.fingerprint, node)
                if reason:
                    self.refusals.append(Refusal(node, reply.metadata.message_type, reason))
                    continue
            kept.append(reply)
        return kept


def refusal_reason(reply_fingerprint, federation_fingerprint: str, node: int) -> str | None:
    """Why a reply must not be aggregated (another model, or no fingerprint), or None."""
    if reply_fingerprint == federation_fingerprint:
        return None
    return (f"reply from node {node} is for model fingerprint {str(reply_fingerprint)[:12]}..., the "
            f"federation trains {federation_fingerprint[:12]}...: dropped before aggregation")
