"""The OpenAI-compatible path against a local chat-completions server, through the real client over HTTP.

The server (tests/chat_server.py: stdlib, 127.0.0.1, port 0) answers each request from a script and
counts what it got, so "a rerun makes zero calls" is the server's count, not the client's word. Waits between retries go
to a recorder instead of `time.sleep`, so the backoff schedule is checked without sleeping.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import uuid
from pathlib import Path

import pytest
from chat_server import ChatServer, Reply
from PIL import Image

from frankenstein_tasks import llm_endpoint as le
from frankenstein_tasks.llm_endpoint import DescriberRecipe, LLMEndpoint, LLMSettings, descriptions_for, load_descriptions
from surgery.errors import FrankensteinError

pytest_plugins = ("chat_server",)  # the chat_server fixture
KEY = f"sk-frank-test-{uuid.uuid4().hex}"


# ------------------------------------------------------------------------------------- helpers


def describing(n: int, body: dict, headers: dict) -> Reply:
    """Answers an image request with the image's size and top-left colour, read from the data: URL."""
    image = _sent_image(body)
    return Reply(text=f"{image.width}x{image.height} colour {image.convert('RGB').getpixel((0, 0))}")


def _sent_image(body: dict) -> Image.Image:
    parts = body["messages"][0]["content"]
    url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(url[len(prefix):])))


def _sent_prompt(body: dict) -> str:
    content = body["messages"][0]["content"]
    return content if isinstance(content, str) else next(p["text"] for p in content if p["type"] == "text")


def images(n: int) -> dict[str, Image.Image]:
    """n small images that differ in size and colour, so a reply can be traced to its image."""
    return {f"item-{i}": Image.new("RGB", (4 + i, 3), (40 * i, 255 - 30 * i, 7)) for i in range(n)}


def expected_text(image: Image.Image) -> str:
    return f"{image.width}x{image.height} colour {image.getpixel((0, 0))}"


def endpoint(server: ChatServer | None, cache: Path, *, key: str | None = KEY, sleep=None, **settings) -> LLMEndpoint:
    settings = {"backoff_s": 0.01, "retries": 2, "timeout_s": 5, **settings}
    base_url = server.url if server else "http://127.0.0.1:9/v1"  # port 9 (discard): nothing answers
    config = LLMSettings.from_env({}, base_url=base_url, api_key=key, **settings)
    return LLMEndpoint(config, cache_dir=cache, sleep=sleep if sleep is not None else (lambda s: None))


def cache_files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------- descriptions


def test_descriptions_cached_second_run_makes_zero_requests(chat_server, tmp_path):
    server = chat_server(describing)
    items = images(6)  # more than a handful: the thread pool and the progress bar run
    first = endpoint(server, tmp_path, workers=3).describe_many(items)
    assert server.count == 6
    assert list(first) == list(items)  # input order, whatever order the threads finished in
    assert first == {i: expected_text(im) for i, im in items.items()}
    sent = {_sent_image(body).tobytes() for body, _ in server.requests}
    assert sent == {im.tobytes() for im in items.values()}  # lossless PNG of each item's image
    assert all(_sent_prompt(body) == le.DESCRIPTION_PROMPT for body, _ in server.requests)
    assert all(body["model"] == "gpt-4o-mini" and body["temperature"] == 0 for body, _ in server.requests)
    files = cache_files(tmp_path)
    assert len(files) == 6 and all(p.suffix == ".json" and not p.name.startswith(".") for p in files)
    assert all(p.parent == tmp_path / "descriptions" / "gpt-4o-mini" for p in files)

    again = endpoint(server, tmp_path).describe_many(items)  # a fresh endpoint: state is on disk only
    assert again == first and server.count == 6

    endpoint(server, tmp_path).describe_many(items, recipe=DescriberRecipe(name="other", user="Say what you see."))  # prompt is in the key
    assert server.count == 12
    endpoint(server, tmp_path, model="other/model").describe_many(dict(list(items.items())[:2]))  # so is the model
    assert server.count == 14
    assert len(list((tmp_path / "descriptions" / "other_model").glob("*.json"))) == 2


def test_another_image_under_the_same_item_id_is_described_again(chat_server, tmp_path):
    """The image is in the key (by its pixels): ids repeat across datasets, a description must not."""
    server = chat_server(describing)
    first, other = images(2).values()
    assert endpoint(server, tmp_path).describe("7", first) == expected_text(first)
    assert endpoint(server, tmp_path).describe("7", other) == expected_text(other) and server.count == 2
    png = tmp_path / "same.png"
    first.save(png)  # the same pixels from a file: a cache hit
    assert endpoint(server, tmp_path).describe("7", png) == expected_text(first) and server.count == 2


def test_describe_one_and_a_corrupt_or_foreign_entry_is_asked_again(chat_server, tmp_path):
    server = chat_server(describing)
    item = images(1)["item-0"]
    assert endpoint(server, tmp_path).describe("item-0", item) == expected_text(item)
    [entry] = cache_files(tmp_path)
    entry.write_text(entry.read_text()[:20])  # as if written by something that is not this module
    assert endpoint(server, tmp_path).describe("item-0", item) == expected_text(item)
    assert server.count == 2
    assert json.loads(entry.read_text())["text"] == expected_text(item)
    entry.write_text(json.dumps({"text": "not from this key"}))  # parses, but its stored key is not ours
    assert endpoint(server, tmp_path).describe("item-0", item) == expected_text(item)
    assert server.count == 3


def test_image_from_file_path_and_bytes(chat_server, tmp_path):
    server = chat_server(describing)
    item = Image.new("RGB", (5, 2), (1, 2, 3))
    item.save(tmp_path / "x.png")
    buffer = io.BytesIO()
    item.save(buffer, format="PNG")
    texts = endpoint(server, tmp_path / "cache").describe_many({"p": tmp_path / "x.png", "b": buffer.getvalue()})
    assert texts == {"p": expected_text(item), "b": expected_text(item)}


# -------------------------------------------------------------------------------------- failures


def test_timeout_is_retried_then_succeeds(chat_server, tmp_path):
    server = chat_server(lambda n, body, h: Reply(delay_s=10) if n == 0 else describing(n, body, h))
    waits = []
    item = images(1)["item-0"]
    text = endpoint(server, tmp_path, timeout_s=0.3, sleep=waits.append).describe("item-0", item)
    assert text == expected_text(item)
    assert server.count == 2 and waits == [0.01]


def test_timeouts_until_retries_run_out_name_the_item(chat_server, tmp_path):
    server = chat_server(lambda n, body, h: Reply(delay_s=10))
    with pytest.raises(FrankensteinError) as caught:
        endpoint(server, tmp_path, timeout_s=0.2, retries=1).describe("chart-7", images(1)["item-0"])
    message = str(caught.value)
    assert "'chart-7'" in message and "timeout after 0.2 s" in message and "2 attempt(s)" in message
    assert server.count == 2 and cache_files(tmp_path) == []


def test_429_then_success_honours_retry_after(chat_server, tmp_path):
    server = chat_server(
        lambda n, body, h: Reply(429, headers={"Retry-After": "2"}) if n == 0 else describing(n, body, h))
    waits = []
    item = images(1)["item-0"]
    assert endpoint(server, tmp_path, sleep=waits.append).describe("item-0", item) == expected_text(item)
    assert server.count == 2
    assert waits == [2.0]  # what the server asked for, which is longer than the 0.01 s backoff


def test_429_asking_for_longer_than_max_wait_stops_at_once(chat_server, tmp_path):
    server = chat_server(lambda n, body, h: Reply(429, headers={"Retry-After": "3600"}))
    waits = []
    with pytest.raises(FrankensteinError, match=r"'item-0'.*HTTP 429.*asks to wait 3600 s"):
        endpoint(server, tmp_path, sleep=waits.append, max_wait_s=30).describe("item-0", images(1)["item-0"])
    assert server.count == 1 and waits == []


def test_500_until_retries_run_out_clear_error_nothing_half_written(chat_server, tmp_path):
    items = images(3)
    failing = items["item-1"].tobytes()

    def script(n, body, headers):
        if _sent_image(body).tobytes() == failing:
            return Reply(500, error="upstream exploded")
        return describing(n, body, headers)

    server = chat_server(script)
    waits = []
    with pytest.raises(FrankensteinError) as caught:
        endpoint(server, tmp_path, retries=2, workers=3, sleep=waits.append).describe_many(items)
    message = str(caught.value)
    assert "\n" not in message
    assert "'item-1'" in message and "HTTP 500" in message and "upstream exploded" in message
    assert "3 attempt(s)" in message
    assert server.count == 1 + 3 + 1  # item-0 and item-2 once each, item-1 1 + 2 retries
    assert waits == [0.01, 0.02]  # backoff_s * 2**k, by hand

    files = cache_files(tmp_path)  # the two that succeeded, complete; nothing for item-1, no temp files
    assert sorted(p.name.split(".")[0] for p in files) == ["item-0", "item-2"]
    assert all(json.loads(p.read_text())["text"] == expected_text(items[p.name.split(".")[0]]) for p in files)

    server.script = describing  # the server recovers: a rerun asks only for what is missing
    assert endpoint(server, tmp_path).describe_many(items) == {i: expected_text(im) for i, im in items.items()}
    assert server.count == 6


def test_backoff_is_capped_by_max_wait(chat_server, tmp_path):
    server = chat_server(lambda n, body, h: Reply(503))
    waits = []
    with pytest.raises(FrankensteinError, match="HTTP 503"):
        endpoint(server, tmp_path, retries=4, backoff_s=1.0, max_wait_s=3.0, sleep=waits.append).describe(
            "item-0", images(1)["item-0"])
    assert waits == [1.0, 2.0, 3.0, 3.0] and server.count == 5


@pytest.mark.parametrize("status", [400, 401, 404])
def test_other_4xx_is_not_retried(chat_server, tmp_path, status):
    server = chat_server(lambda n, body, h: Reply(status, error="nope"))
    with pytest.raises(FrankensteinError, match=rf"'item-0'.*HTTP {status} \(nope\), not retried"):
        endpoint(server, tmp_path).describe("item-0", images(1)["item-0"])
    assert server.count == 1 and cache_files(tmp_path) == []


def test_empty_reply_is_an_error_not_a_cached_description(chat_server, tmp_path):
    server = chat_server(lambda n, body, h: Reply(text="  "))
    with pytest.raises(FrankensteinError, match="'item-0'.*holds no text"):
        endpoint(server, tmp_path).describe("item-0", images(1)["item-0"])
    assert cache_files(tmp_path) == []


# ------------------------------------------------------------------------------------------ key


def test_key_is_sent_but_never_written_logged_or_shown(chat_server, tmp_path, caplog):
    def script(n, body, headers):
        if "broken" in _sent_prompt(body):  # a careless server that echoes the request's auth header
            return Reply(500, error=f"cannot use {headers.get('authorization')}")
        is_image = isinstance(body["messages"][0]["content"], list)
        return describing(n, body, headers) if is_image else Reply(text="Correct")

    server = chat_server(script)
    caplog.set_level(logging.DEBUG)
    llm = endpoint(server, tmp_path)
    llm.describe_many(images(2))
    llm.judge("q1", question="2+3?", gold="5", output="5")
    with pytest.raises(FrankensteinError) as caught:
        llm.describe("item-0", images(1)["item-0"], recipe=DescriberRecipe(name="broken", user="broken prompt"))

    assert all(headers["authorization"] == f"Bearer {KEY}" for _, headers in server.requests)  # the key was in play
    assert "cannot use Bearer ***" in str(caught.value) and KEY not in str(caught.value)
    files = cache_files(tmp_path)
    assert len(files) == 3
    assert all(KEY.encode() not in p.read_bytes() for p in files)
    shown = [repr(llm), repr(llm.settings), str(llm.settings), llm.settings.model_dump_json(),
             str(llm.settings.model_dump()), caplog.text]
    assert all(KEY not in text for text in shown)
    assert any("HTTP 500" in r.getMessage() for r in caplog.records)  # the retries were logged


def test_missing_key_only_matters_when_a_call_is_needed(chat_server, tmp_path):
    server = chat_server(lambda n, body, h: describing(n, body, h) if isinstance(body["messages"][0]["content"], list)
                         else Reply(text="Incorrect"))
    items = images(2)
    made = endpoint(server, tmp_path).describe_many(items)
    endpoint(server, tmp_path).judge("q1", question="2+3?", gold="5", output="6")
    assert server.count == 3

    keyless = endpoint(server, tmp_path, key=None)
    assert keyless.describe_many(items) == made
    assert keyless.judge("q1", question="2+3?", gold="5", output="6").correct is False
    assert server.count == 3

    with pytest.raises(FrankensteinError) as caught:
        keyless.describe_many(images(3))  # item-2 is not cached
    message = str(caught.value)
    assert "\n" not in message and "'item-2'" in message and "OPENAI_API_KEY" in message
    with pytest.raises(FrankensteinError, match="judging item 'q2'.*no API key"):
        keyless.judge("q2", question="1+1?", gold="2", output="2")
    assert server.count == 3


# ---------------------------------------------------------------------------------------- judge


def test_judge_verdicts_cached_and_keyed_on_inputs_model_and_prompt_version(chat_server, tmp_path, monkeypatch):
    def script(n, body, headers):
        prompt = body["messages"][0]["content"]
        if "Model output:\nmaybe" in prompt:
            return Reply(text="I cannot tell.")
        return Reply(text="Correct." if "Model output:\nB" in prompt else "Incorrect")

    server = chat_server(script)
    choices = ["3", "5", "7"]
    ask = {"question": "Which is 2+3?", "gold": "5", "choices": choices}
    verdict = endpoint(server, tmp_path).judge("q1", output="B", **ask)
    assert (verdict.correct, verdict.parsed, verdict.reply) == (True, True, "Correct.")
    sent = server.requests[0][0]["messages"][0]["content"]
    assert "Which is 2+3?" in sent and "(A) 3\n(B) 5\n(C) 7" in sent and "Reference answer: 5" in sent

    assert endpoint(server, tmp_path).judge("q1", output="B", **ask) == verdict
    assert server.count == 1  # cached
    wrong = endpoint(server, tmp_path).judge("q1", output="A", **ask)
    assert (wrong.correct, wrong.parsed) == (False, True) and server.count == 2  # the output is in the key
    unsure = endpoint(server, tmp_path).judge("q1", output="maybe", **ask)
    assert (unsure.correct, unsure.parsed, unsure.reply) == (False, False, "I cannot tell.")
    endpoint(server, tmp_path, model="judge-2").judge("q1", output="B", **ask)
    assert server.count == 4  # the model is in the key
    monkeypatch.setattr(le, "PROJECT_JUDGE", dataclasses.replace(le.PROJECT_JUDGE, version=le.JUDGE_PROMPT_VERSION + 1))
    endpoint(server, tmp_path).judge("q1", output="B", **ask)
    assert server.count == 5  # so is the judge prompt version
    assert len(list((tmp_path / "judge").rglob("*.json"))) == 5


@pytest.mark.parametrize("reply, verdict", [
    ("Correct", True), ("correct.", True), ("**Incorrect**", False), ("Yes, it matches", True),
    ("no", False), ("1", True), ("0", False), ("The answer is correct", None), ("", None),
])
def test_parse_verdict(reply, verdict):
    assert le.parse_verdict(reply) is verdict


# ------------------------------------------------------------------------------ descriptions file


def test_descriptions_file_needs_no_endpoint_and_no_key(tmp_path, monkeypatch):
    path = tmp_path / "descriptions.json"
    path.write_text(json.dumps({"7": "a bar chart", "9": "a triangle", "extra": "unused"}))
    no_endpoint = endpoint(None, tmp_path / "cache", key=None)  # any call would fail: port 9, no key
    got = descriptions_for({"9": None, "7": None}, descriptions_file=path, endpoint=no_endpoint)
    assert got == {"9": "a triangle", "7": "a bar chart"} and list(got) == ["9", "7"]
    monkeypatch.setenv(le.DESCRIPTIONS_ENV, str(path))
    assert descriptions_for({"7": None}, endpoint=no_endpoint) == {"7": "a bar chart"}
    assert no_endpoint.calls == 0 and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("content, problem", [
    (None, "does not exist"),
    ("{not json", "is not valid JSON"),
    ('["a", "b"]', "must hold one JSON object"),
    ('{"7": ""}', "item '7' has no text"),
    ('{"7": 3}', "item '7' has no text"),
])
def test_bad_descriptions_file_is_a_one_line_error(tmp_path, content, problem):
    path = tmp_path / "d.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(FrankensteinError) as caught:
        load_descriptions(path)
    assert problem in str(caught.value) and str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_descriptions_file_missing_an_item(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('{"7": "a chart"}')
    with pytest.raises(FrankensteinError, match=r"no description for item '8' \(2 of 3 items missing\)"):
        descriptions_for({"7": None, "8": None, "9": None}, descriptions_file=path)


# ------------------------------------------------------------------------------------- settings


def test_settings_from_environment():
    assert LLMSettings.from_env({}) == LLMSettings()
    assert LLMSettings().model == "gpt-4o-mini" and LLMSettings().api_key is None
    env = {
        "FRANKENSTEIN_LLM_MODEL": "m", "OPENAI_BASE_URL": "http://b/v1", "FRANKENSTEIN_LLM_BASE_URL": "http://a:81/v1",
        "OPENAI_API_KEY": "k-openai", "FRANKENSTEIN_LLM_TIMEOUT": "2.5", "FRANKENSTEIN_LLM_RETRIES": "1",
        "FRANKENSTEIN_LLM_BACKOFF": "0.5", "FRANKENSTEIN_LLM_MAX_WAIT": "7", "FRANKENSTEIN_LLM_WORKERS": "2",
    }
    s = LLMSettings.from_env(env)
    assert (s.model, s.base_url, s.host, s.timeout_s, s.retries, s.backoff_s, s.max_wait_s, s.workers) == (
        "m", "http://a:81/v1", "a:81", 2.5, 1, 0.5, 7.0, 2)
    assert s.api_key.get_secret_value() == "k-openai"
    assert LLMSettings.from_env({**env, "FRANKENSTEIN_LLM_API_KEY": "k-frank"}).api_key.get_secret_value() == "k-frank"
    assert LLMSettings.from_env({"OPENAI_BASE_URL": "http://b/v1"}).base_url == "http://b/v1"
    assert LLMSettings(base_url="https://user:pw@host.example/v1").host == "host.example"
    assert "pw" not in repr(LLMSettings(base_url="https://user:pw@host.example/v1"))


@pytest.mark.parametrize("variable, value", [
    ("FRANKENSTEIN_LLM_TIMEOUT", "soon"), ("FRANKENSTEIN_LLM_TIMEOUT", "0"),
    ("FRANKENSTEIN_LLM_RETRIES", "-1"), ("FRANKENSTEIN_LLM_WORKERS", "0"),
])
def test_bad_setting_names_the_variable(variable, value):
    with pytest.raises(FrankensteinError) as caught:
        LLMSettings.from_env({variable: value, "OPENAI_API_KEY": KEY})
    assert str(caught.value).startswith(f"{variable}: ") and KEY not in str(caught.value)


def test_default_cache_is_under_frankenstein_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FRANKENSTEIN_CACHE", str(tmp_path))
    assert LLMEndpoint(LLMSettings()).cache_dir == tmp_path / "llm"
