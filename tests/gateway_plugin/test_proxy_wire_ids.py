"""How the stdio proxy tells the upstream's answers to the agent from answers to itself."""

from __future__ import annotations

import mcp_types as types
import pytest

from gateway_plugin.proxy.wire_ids import NO_ID, SdkIds, answer_id


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # TypeScript SDK servers: the id closes the object.
        (b'{"result":{"content":[]},"jsonrpc":"2.0","id":7}\n', 7),
        (b'{"result":{},"jsonrpc":"2.0","id":"a,b}"}\n', "a,b}"),
        # Python SDK servers: the id follows "jsonrpc".
        (b'{"jsonrpc":"2.0","id":"req-1","result":{"id":99}}\n', "req-1"),
        # Spaced out: parsed in full.
        (b'{"jsonrpc": "2.0", "id": 12, "result": {}}\r\n', 12),
        # A nested "id" last in the result is not the message's id.
        (b'{"jsonrpc":"2.0","result":{"item":{"id":5}},"id":6}', 6),
        (b'{"result":{"item":{"id":5}},"jsonrpc":"2.0","id":6}', 6),
        (b'{"result":{"x":{"id":5}}}\n', NO_ID),
        (b"not json\n", NO_ID),
    ],
)
def test_the_answer_id_is_read_where_servers_write_it(line: bytes, expected: object) -> None:
    found = answer_id(line)
    assert found is NO_ID if expected is NO_ID else found == expected


def test_the_gateways_requests_are_marked_on_the_way_out_and_restored_on_the_way_back() -> None:
    ids = SdkIds()
    request = types.JSONRPCRequest(
        jsonrpc="2.0",
        id=3,
        method="tools/call",
        params={"name": "x", "_meta": {"progressToken": 3}},
    )
    wire = ids.outgoing(request)
    assert isinstance(wire, types.JSONRPCRequest)
    assert ids.is_marked(wire.id) and wire.id != 3
    assert wire.params is not None and ids.is_marked(wire.params["_meta"]["progressToken"])

    answer = types.JSONRPCResponse(jsonrpc="2.0", id=wire.id, result={})
    assert ids.incoming(answer) == types.JSONRPCResponse(jsonrpc="2.0", id=3, result={})
    progress = types.JSONRPCNotification(
        jsonrpc="2.0",
        method="notifications/progress",
        params={"progressToken": wire.params["_meta"]["progressToken"], "progress": 1},
    )
    restored = ids.incoming(progress)
    assert isinstance(restored, types.JSONRPCNotification) and restored.params is not None
    assert restored.params["progressToken"] == 3


def test_string_ids_survive_the_round_trip_and_absent_params_stay_absent() -> None:
    ids = SdkIds()
    wire = ids.outgoing(types.JSONRPCRequest(jsonrpc="2.0", id="abc", method="tools/list"))
    assert '"params"' not in wire.model_dump_json(by_alias=True, exclude_unset=True)
    assert ids.unmark(wire.id) == "abc"  # type: ignore[union-attr]


def test_the_gateways_cancellations_name_the_marked_id() -> None:
    ids = SdkIds()
    cancel = types.JSONRPCNotification(
        jsonrpc="2.0", method="notifications/cancelled", params={"requestId": 4}
    )
    wire = ids.outgoing(cancel)
    assert isinstance(wire, types.JSONRPCNotification) and wire.params is not None
    assert wire.params["requestId"] == ids.mark(4)


def test_the_upstreams_own_ids_are_left_alone() -> None:
    ids = SdkIds()
    answer = types.JSONRPCResponse(jsonrpc="2.0", id=3, result={})
    assert ids.incoming(answer) is answer
    request_from_server = types.JSONRPCRequest(jsonrpc="2.0", id=9, method="roots/list")
    assert ids.incoming(request_from_server) is request_from_server
