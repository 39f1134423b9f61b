"""A Flower Grid that delivers every message to a ClientApp in this process (tests and
small simulations: no Ray, no processes, one device after the other).

Flower's strategies and workflows (the Message API ones, and the legacy SecAgg+ workflow)
talk to it as to a SuperLink: each message is serialized and parsed again with Flower's own
protobuf serde (as the Fleet API would carry it: SecAgg+ reuses one RecordDict for every
device, so sharing objects would be wrong), handed to the ClientApp with that node's own
Context (whose state SecAgg+ keeps between its stages), and an exception becomes an error
reply as a SuperNode would send it. `delivered` keeps every (message, reply) unless
`keep=False`. Flower stamps new messages with its process's task identity, which a real
ServerApp process sets: `ServerIdentity` sets and clears it around a federation.
"""

from __future__ import annotations

import types

from flwr.app import Context, Error, Message, RecordDict
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

RUN_ID = 1


def _over_the_wire(message: Message) -> Message:
    return message_from_proto(message_to_proto(message))


class InProcessGrid(Grid):
    def __init__(self, client_app, node_configs: dict[int, dict], keep: bool = True):
        self.client_app, self.keep = client_app, keep
        self.contexts = {node: Context(run_id=RUN_ID, node_id=node, node_config=dict(config), state=RecordDict(),
                                       run_config={}) for node, config in node_configs.items()}
        self.delivered: list[tuple[Message, Message]] = []      # (message as sent, reply)

    def set_run(self, run) -> None:
        pass

    @property
    def run(self):
        return types.SimpleNamespace(run_id=RUN_ID)

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return Message(content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id)

    def get_node_ids(self):
        return list(self.contexts)

    def push_messages(self, messages):
        raise NotImplementedError("the strategies used here call send_and_receive")

    def pull_messages(self, message_ids):
        raise NotImplementedError("the strategies used here call send_and_receive")

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for message in messages:
            received = _over_the_wire(message)
            try:
                reply = self.client_app(received, self.contexts[message.metadata.dst_node_id])
            except Exception as error:  # noqa: BLE001 - a SuperNode turns any exception into an error reply
                reply = Message(Error(code=0, reason=f"{type(error).__name__}: {error}"), reply_to=received)
            reply = _over_the_wire(reply)
            if self.keep:
                self.delivered.append((received, reply))
            replies.append(reply)
        return replies


class ServerIdentity:
    """The task identity Flower stamps on the messages a ServerApp creates."""

    def __enter__(self):
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = RUN_ID, 1, 1
        return self

    def __exit__(self, *exc_info):
        TaskIdentity._run_id = TaskIdentity._node_id = TaskIdentity._task_id = None
