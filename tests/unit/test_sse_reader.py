"""The SSE reader of the openai backend on hand-made streams: event framing across reads, and where each chunk's
token count comes from (continuous usage, token ids, one per text chunk when the final usage agrees, else refused)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gpu_simulate_test.backends._sse import StreamError, StreamReader


def _event(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _chunk(text: str, *, done: int | None = None, ids: list[int] | None = None) -> bytes:
    choice: dict[str, Any] = {"index": 0, "text": text}
    if ids is not None:
        choice["token_ids"] = ids
    obj: dict[str, Any] = {"choices": [choice]}
    if done is not None:
        obj["usage"] = {"prompt_tokens": 7, "completion_tokens": done}
    return _event(obj)


def _final(total: int) -> bytes:
    return _event({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": total}})


def _read(parts: list[tuple[bytes, int]], max_tokens: int = 100) -> tuple[StreamReader, list[int]]:
    r = StreamReader()
    for data, t in parts:
        r.feed(data, t)
    r.finish()
    return r, r.tokens(max_tokens).times


def test_continuous_usage_gives_each_chunk_its_count() -> None:
    r, times = _read([(_chunk(" a", done=1), 10), (_chunk(" b c", done=3), 20), (_chunk("", done=4), 30), (_final(4), 31),
                      (b"data: [DONE]\n\n", 31)])
    assert times == [10, 20, 20, 30] and r.prompt_tokens == 7 and r.done
    assert r.tokens(100).multi_token_chunks == 1 and r.tokens(100).chunks == 3


def test_events_split_across_reads_take_the_time_of_the_read_that_completes_them() -> None:
    stream = _chunk(" a", done=1) + b": keep-alive comment\n\n" + _chunk(" b", done=2)
    cut = len(_chunk(" a", done=1)) - 3  # the first event ends in the second read
    _, times = _read([(stream[:cut], 5), (stream[cut:cut + 40], 9), (stream[cut + 40:], 12)])
    assert times == [9, 12]


def test_crlf_line_ends_and_multi_line_data() -> None:
    body = json.dumps({"choices": [{"text": " x"}], "usage": {"completion_tokens": 1}}).replace(", ", ",\r\ndata: ", 1)
    raw = b"event: message\r\ndata: " + body.encode() + b"\r\n\r"
    _, times = _read([(raw, 3), (b"\n" + _chunk(" y", done=2).replace(b"\n", b"\r\n"), 4)])
    assert times == [4, 4]  # the first event's last byte came with the second read


def test_token_ids_count_when_there_is_no_usage() -> None:
    _, times = _read([(_chunk(" a b", ids=[1, 2]), 1), (_chunk(" c", ids=[3]), 2), (_final(3), 2)])
    assert times == [1, 1, 2]


def test_one_token_per_text_chunk_only_when_the_final_usage_says_so() -> None:
    _, times = _read([(_chunk(" a"), 1), (_chunk(""), 2), (_chunk(" b"), 3), (_final(2), 3)])
    assert times == [1, 3]  # the chunk without text carried no token
    with pytest.raises(StreamError, match="2 chunks with text carry no token count \\(3 tokens in the final usage\\)") as err:
        _read([(_chunk(" a"), 1), (_chunk(" bc"), 2), (_final(3), 3)])
    assert err.value.status == "uncounted_stream"
    with pytest.raises(StreamError, match="no final usage"):
        _read([(_chunk(" a"), 1)])


@pytest.mark.parametrize("parts, status, fragment", [
    ([(b"data: {oops\n\n", 1)], "bad_stream", "event 1 is not JSON"),
    ([(_chunk(" a", done=1), 1), (b'data: {"error": {"message": "overloaded"}}\n\n', 2)], "server_error", "overloaded"),
    ([(_chunk(" a", done=1), 1), (_chunk(" b", done=3), 2), (_final(2), 3)], "bad_stream", "usage.completion_tokens went down"),
    ([(_chunk(" a", done=2), 1), (_final(3), 2)], "bad_stream", "the chunks carried 2 tokens but usage counts 3"),
    ([(_final(0), 1)], "no_tokens", "without a token"),
    ([(_chunk(" a", done=1) + b"data: {\"choi", 1)], "bad_stream", "ended inside an event"),
])
def test_broken_streams_name_what_is_wrong(parts: list[tuple[bytes, int]], status: str, fragment: str) -> None:
    with pytest.raises(StreamError, match=fragment) as err:
        _read(parts)
    assert err.value.status == status


def test_more_tokens_than_asked_is_refused() -> None:
    with pytest.raises(StreamError, match="the server sent 3 tokens for max_tokens=2"):
        _read([(_chunk(" a b c", done=3), 1)], max_tokens=2)
