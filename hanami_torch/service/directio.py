"""Direct IO: a WebSocket per client to predict or train one sample at a time.

The socket is authenticated before the upgrade (the ``Authorization`` header of the handshake,
the policy and the cluster's visibility), then every frame gets exactly one answer.  Samples of
all sockets of a cluster are batched by :class:`~.clusters.DirectIO` and run off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time

import numpy as np
import torch
from aiohttp import WSMsgType, web

from .api import METRICS_KEY
from .errors import BadRequest, ServiceError, Unauthorized, Unprocessable, error_body

OP_PREDICT, OP_LEARN = 1, 2
STATUS_OK, STATUS_ERROR = 0, 1
_HEADER = struct.Struct("<B3x")

FRAME_DOC = """Upgrade to a WebSocket (send the token in the handshake's Authorization header).
Every frame gets exactly one answer, in order.

JSON text frames:
* `{"op": "predict", "inputs": [n_inputs numbers] | {brick: [numbers]}, "id": any}` ->
  `{"id": ..., "outputs": [n_outputs numbers]}`
* `{"op": "learn", "inputs": ..., "targets": [n_outputs numbers] | {brick: [...]}, "id": any}` -> one
  training step; `{"id": ..., "outputs": [...]}` are the outputs before the update
* `{"op": "info"}` -> `{"n_inputs", "n_outputs", "input_bricks", "output_bricks"}`
* a malformed frame -> `{"id": ..., "error": {"code", "message"}}`; the socket stays usable.

Binary frames (little endian): byte 0 is the op (1 predict, 2 learn), bytes 1-3 are zero, then
n_inputs float32 (and n_outputs float32 targets for learn).  The answer: byte 0 is the status
(0 ok, then n_outputs float32; 1 error, then the UTF-8 JSON error body), bytes 1-3 zero.

The server closes an idle socket (code 4408), one whose token expired or was revoked (4401), and
all sockets of a deleted cluster (4404)."""


async def direct_io(call) -> web.WebSocketResponse:
    """The route handler: checks, upgrades, then answers frames until the client leaves."""
    service, request, principal = call.service, call.request, call.principal
    cluster_id = call.params["cluster_id"]
    live = service.cluster_for_io(principal, cluster_id)
    socket = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024, autoping=True)
    if not socket.can_prepare(request).ok:
        raise BadRequest("this endpoint speaks WebSocket: send an Upgrade: websocket handshake")
    token = request.headers["Authorization"].partition(" ")[2].strip()
    await socket.prepare(request)
    live.sockets.add(socket)
    metrics = request.app[METRICS_KEY]
    metrics.sockets += 1
    seen_generation = service.auth.generation
    try:
        while True:
            try:
                message = await socket.receive(timeout=service.config.ws_idle_timeout_s)
            except asyncio.TimeoutError:
                await socket.close(code=4408, message=b"idle timeout")
                break
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                closer = live.closers.pop(socket, None)
                if closer is not None:  # closed by the server elsewhere (cluster deleted, shutdown)
                    await asyncio.wait([closer], timeout=15)
                break
            binary = message.type == WSMsgType.BINARY
            try:
                # a changed session (logout, deleted or demoted user) or an expired token ends the socket
                if time.time() >= principal.expires_at:
                    raise Unauthorized("the token has expired; log in again and reconnect")
                if service.auth.generation != seen_generation:
                    seen_generation = service.auth.generation
                    principal = service.auth.check_token(token)
                    live = service.cluster_for_io(principal, cluster_id)
            except ServiceError as error:
                await _send_error(socket, binary, None, error)
                await socket.close(code=4401, message=b"session ended")
                break
            metrics.frames += 1
            if binary:
                await _binary_frame(service, live, socket, message.data)
            elif message.type == WSMsgType.TEXT:
                await _text_frame(service, live, socket, message.data)
    finally:
        live.sockets.discard(socket)
        metrics.sockets -= 1
    return socket


async def _binary_frame(service, live, socket, data: bytes) -> None:
    module = live.module
    try:
        if len(data) < 4:
            raise BadRequest("a binary frame starts with 4 header bytes: op (1 predict, 2 learn) and 3 zeros")
        op = data[0]
        if op not in (OP_PREDICT, OP_LEARN):
            raise BadRequest(f"unknown op {op} in byte 0; use 1 (predict) or 2 (learn)")
        width = module.n_inputs + (module.n_outputs if op == OP_LEARN else 0)
        if len(data) != 4 + 4 * width:
            raise BadRequest(f"a {'learn' if op == OP_LEARN else 'predict'} frame for this cluster has "
                             f"{4 + 4 * width} bytes (4 + 4 x {width} float32), got {len(data)}")
        values = torch.from_numpy(np.frombuffer(data, dtype="<f4", offset=4).copy())
        if not bool(torch.isfinite(values).all()):
            raise Unprocessable("the values must be finite (no NaN or infinity)")
        inputs = values[: module.n_inputs]
        targets = values[module.n_inputs:] if op == OP_LEARN else None
        outputs = await service.direct_io.run(live, inputs, targets)
    except ServiceError as error:
        await _send_error(socket, True, None, error)
        return
    await socket.send_bytes(_HEADER.pack(STATUS_OK) + outputs.numpy().astype("<f4", copy=False).tobytes())


async def _text_frame(service, live, socket, text: str) -> None:
    request_id = None
    try:
        try:
            frame = json.loads(text)
        except ValueError as error:
            raise BadRequest(f"the frame is not JSON: {error}") from None
        if not isinstance(frame, dict):
            raise BadRequest("a text frame is a JSON object with an 'op'")
        request_id = frame.get("id")
        op = frame.get("op")
        module = live.module
        allowed = {"predict": {"op", "id", "inputs"}, "learn": {"op", "id", "inputs", "targets"}, "info": {"op", "id"}}
        if op not in allowed:
            raise Unprocessable("'op' must be 'predict', 'learn' or 'info'")
        unknown = sorted(set(frame) - allowed[op])
        if unknown:
            raise Unprocessable(f"unknown field(s) {unknown} for op {op!r}")
        if op == "info":
            template = module.template
            await socket.send_json({"id": request_id, "n_inputs": module.n_inputs, "n_outputs": module.n_outputs,
                                    "input_bricks": {b.name: b.number_of_neurons for b in template.input_bricks},
                                    "output_bricks": {b.name: b.number_of_neurons for b in template.output_bricks}})
            return
        inputs = _values(frame.get("inputs"), module.template.input_bricks, module.n_inputs, "inputs")
        targets = None
        if op == "learn":
            targets = _values(frame.get("targets"), module.template.output_bricks, module.n_outputs, "targets")
        outputs = await service.direct_io.run(live, inputs, targets)
    except ServiceError as error:
        await _send_error(socket, False, request_id, error)
        return
    await socket.send_str(json.dumps({"id": request_id, "outputs": outputs.tolist()}, separators=(",", ":")))


def _values(value, bricks, width: int, what: str) -> torch.Tensor:
    """A flat float32 tensor from a list of numbers or a dict of lists by brick name."""
    if isinstance(value, dict):
        names = [brick.name for brick in bricks]
        if sorted(value) != sorted(names):
            raise Unprocessable(f"{what} as a dict needs exactly the bricks {names}, got {sorted(value)}")
        parts = []
        for brick in bricks:
            part = value[brick.name]
            if not isinstance(part, list) or len(part) != brick.number_of_neurons:
                raise Unprocessable(f"{what}[{brick.name!r}] must be a list of {brick.number_of_neurons} numbers")
            parts.extend(part)
        value = parts
    if not isinstance(value, list) or len(value) != width:
        raise Unprocessable(f"{what} must be a list of {width} numbers (or a dict by brick name)")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise Unprocessable(f"{what} must hold only numbers")
    tensor = torch.tensor(value, dtype=torch.float32)
    if not bool(torch.isfinite(tensor).all()):
        raise Unprocessable(f"{what} must be finite numbers (no NaN, infinity or overflow)")
    return tensor


async def _send_error(socket, binary: bool, request_id, error: ServiceError) -> None:
    body = error_body(error.code, error.message)
    if binary:
        await socket.send_bytes(_HEADER.pack(STATUS_ERROR) + json.dumps(body).encode())
    else:
        await socket.send_json({"id": request_id, **body})
