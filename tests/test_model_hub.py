"""Loading a model by hub id when the hub cannot be reached: one fast, clear failure (the caller
then falls back), not ~25 s of retries and a screenful of warnings (issue 15, point 3)."""
from __future__ import annotations

import socket
import time

import pytest

from manuscripts_search.embedding import hub
from manuscripts_search.embedding.encoders import EncoderLoadError, load_vision_language_encoder


@pytest.fixture(autouse=True)
def fresh_answer():
    hub.forget()
    yield
    hub.forget()


def test_offline_mode_answers_without_touching_the_network(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub.hub_status() == (False, "offline mode (HF_HUB_OFFLINE) is set")


def test_a_refused_or_silent_hub_is_found_unreachable_within_the_probe_timeout(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
    started = time.monotonic()
    reachable, why = hub.hub_status()
    assert not reachable and "cannot be reached" in why and time.monotonic() - started < 1
    hub.forget()
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(1)  # accepts, never answers: a TCP connection is all the probe asks
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{listening.getsockname()[1]}")
    assert hub.hub_status() == (True, "")
    closed.close()
    listening.close()


def test_loading_an_uncached_hub_model_while_offline_fails_at_once_with_one_sentence(monkeypatch):
    from huggingface_hub import constants

    from transformers import AutoModel, AutoProcessor  # noqa: F401  (torch: seconds to import, before the clock)

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    started = time.monotonic()
    with pytest.raises(EncoderLoadError) as caught:
        load_vision_language_encoder("example-org/no-such-model-anywhere", device="cpu")
    assert time.monotonic() - started < 2
    message = str(caught.value)
    assert "offline mode (HF_HUB_OFFLINE) is set, and the model is not in this machine's Hugging Face cache" in message
