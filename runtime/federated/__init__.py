"""Federated personalization on Flower: one compiled model, many devices.

`head` (numpy only) says what travels: the head's kernels and biases, chosen by their state
role in the contract, never optimizer slots; `client_data` holds a device's cached
bottlenecks; `client` trains and evaluates a `TransferModel` for one round. The Flower glue
(`client_app`, `server_app`, `wire` for the two message layouts, `privacy_mods` and
`secure_aggregation` for differential privacy and SecAgg+, `traffic`, `in_process`) imports
`flwr` (the `federated` extra); nothing here is imported by `tflite_transfer.runtime` itself,
so the plain runtime stays numpy + LiteRT.
"""
