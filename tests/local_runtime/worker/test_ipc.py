"""Framing on the front <-> model link: frames survive any split of the byte stream."""

from __future__ import annotations

import numpy as np

from local_runtime.worker import ipc


class Collect(ipc.FramedProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[tuple[int, int, bytes]] = []

    def frame_received(self, request_id: int, kind: int, payload: bytes) -> None:
        self.frames.append((request_id, kind, payload))


FRAMES = [
    (1, ipc.CALL, b'{"texts":["a"]}'),
    (2, ipc.CALL, b""),
    (0xFFFFFFFF, ipc.RESULT, bytes(range(256)) * 3),
]
STREAM = b"".join(ipc.frame(*f) for f in FRAMES)


def test_frames_in_one_chunk():
    link = Collect()
    link.data_received(STREAM)
    assert link.frames == FRAMES


def test_frames_split_at_every_byte():
    for cut in range(1, len(STREAM)):
        link = Collect()
        link.data_received(STREAM[:cut])
        link.data_received(STREAM[cut:])
        assert link.frames == FRAMES, cut


def test_frames_byte_by_byte():
    link = Collect()
    for i in range(len(STREAM)):
        link.data_received(STREAM[i : i + 1])
    assert link.frames == FRAMES


def test_result_round_trip_is_exact():
    values = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    counts, back = ipc.unpack_result(ipc.pack_result([4, 0, 7], values))
    assert counts == [4, 0, 7]
    assert back.dtype == np.float32 and np.array_equal(back, values)


def test_empty_result():
    counts, back = ipc.unpack_result(ipc.pack_result([], np.zeros((0, 1), dtype=np.float32)))
    assert counts == [] and back.shape == (0, 1)
