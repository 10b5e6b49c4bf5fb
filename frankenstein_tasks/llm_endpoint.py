"""Text descriptions of images and an optional answer judge, through any OpenAI-compatible endpoint.

The transfer task `frank_math_vqa` (METHOD.md section 3) needs, for its condition B, a text
description of each item's image; the paper generated them once with gpt-4o-mini and cached them per
item. The same endpoint can stand in for the rule-based grader as a judge when the user asks. This
module is the one place that talks to such an endpoint, so that everything about it is decided once:

* **Settings** come from the environment only (`LLMSettings.from_env`, variables below). The API key
  is a `SecretStr`: it is sent in the Authorization header and nowhere else; it never reaches a log
  line, the cache, a result, a repr or an error message (error text from the server is scrubbed of it).
* **Cache**: every reply is a small JSON file, written atomically (`surgery.atomic`), keyed by what
  determines the reply, so a rerun makes zero calls and a killed run leaves no half-written entry::

      <cache>/descriptions/<model>/<item id>.<key16>.json   key: item id, model, prompt text, the
                                                             image's pixels (mode, size, bytes) (and,
                                                             for another recipe, its system prompt,
                                                             message order and parameters)
      <cache>/judge/<model>/<item id>.<key16>.json          key: item id, model, judge prompt
                                                             version, rendered judge prompt
                                                             (question, choices, gold, output; and,
                                                             for another recipe, its name, system
                                                             prompt and parameters)

  `<cache>` is the folder given to `LLMEndpoint`, else `$FRANKENSTEIN_CACHE/llm` (default
  ~/.cache/frankenstein/llm). The base URL is not part of the key: the same model name behind another
  proxy hits the same entries. The image is (by its pixels, not its file encoding): item ids repeat
  across datasets and local copies (the organism's items are numbered from 1 in every setting), and
  another image under the same id needs another description. An entry that does not parse or whose
  stored key differs is a miss.
* **Descriptions from a file** (`load_descriptions`, `descriptions_for`): a JSON object item id ->
  text; no endpoint, no key.
* **Failures**: 429, 5xx, timeouts and connection errors are retried `retries` times with exponential
  backoff `backoff_s * 2**k`, each wait capped at `max_wait_s`; a Retry-After header is honoured
  (the wait is at least what the server asks) when it is at most `max_wait_s`, and a longer one ends
  the retries at once. So the total wait is at most `retries * max_wait_s`. Then one
  `FrankensteinError` names the item and the last status. Any other 4xx is not retried. A missing
  key is an error only when a call is actually needed (cache hits and description files need none).

* **Recipes**: how a description or a verdict is asked for (`DescriberRecipe`, `JudgeRecipe`): the
  prompts, the message layout and the request parameters. The project's are `PROJECT_DESCRIBER` (one
  user prompt, temperature 0) and `PROJECT_JUDGE` (the whole output, a one-word verdict); the
  authors' (their system and user prompts, max_completion_tokens, the server's default temperature,
  a JSON verdict on the extracted answer) are in `frankenstein_tasks.paper_protocol`.

Why the `openai` client and not lmms-eval's `llm_judge` providers: the providers retry every
exception (400 and 401 included) with a fixed delay, leave the client's own retries on underneath
theirs, ignore Retry-After, read the base URL from `OPENAI_API_URL` rather than the client's
`OPENAI_BASE_URL`, and have no cache. Here the client runs with `max_retries=0` and the retry loop
above is ours, so the policy is what this docstring says and the tests pin it.

Environment:
    FRANKENSTEIN_LLM_MODEL        model name (default gpt-4o-mini)
    FRANKENSTEIN_LLM_BASE_URL     endpoint, e.g. http://localhost:8000/v1 (else OPENAI_BASE_URL,
                                  else OpenAI's)
    FRANKENSTEIN_LLM_API_KEY      key (else OPENAI_API_KEY); local servers that need none: any text
    FRANKENSTEIN_LLM_TIMEOUT      seconds per request (default 60)
    FRANKENSTEIN_LLM_RETRIES      retries after the first attempt (default 4)
    FRANKENSTEIN_LLM_BACKOFF      first backoff wait in seconds (default 1)
    FRANKENSTEIN_LLM_MAX_WAIT     longest single wait in seconds (default 30)
    FRANKENSTEIN_LLM_WORKERS      parallel requests when generating many descriptions (default 4)
    FRANKENSTEIN_DESCRIPTIONS     a descriptions JSON file for `descriptions_for` (optional)
    FRANKENSTEIN_CACHE            cache root (default ~/.cache/frankenstein)
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from tqdm import tqdm

from frankenstein_tasks.grading import option_lines
from surgery.atomic import write_json
from surgery.errors import FrankensteinError

log = logging.getLogger(__name__)

ImageLike = Image.Image | bytes | str | os.PathLike

DESCRIPTIONS_ENV = "FRANKENSTEIN_DESCRIPTIONS"
KEY_ENVS = ("FRANKENSTEIN_LLM_API_KEY", "OPENAI_API_KEY")
BASE_URL_ENVS = ("FRANKENSTEIN_LLM_BASE_URL", "OPENAI_BASE_URL")
# setting -> environment variable (the key and base URL have fallbacks, above)
SETTING_ENVS = {
    "model": "FRANKENSTEIN_LLM_MODEL",
    "timeout_s": "FRANKENSTEIN_LLM_TIMEOUT",
    "retries": "FRANKENSTEIN_LLM_RETRIES",
    "backoff_s": "FRANKENSTEIN_LLM_BACKOFF",
    "max_wait_s": "FRANKENSTEIN_LLM_MAX_WAIT",
    "workers": "FRANKENSTEIN_LLM_WORKERS",
}
HANDFUL = 5  # more misses than this get a progress bar

DESCRIPTION_PROMPT = (
    "Describe this image in detail for someone who cannot see it and must answer questions about "
    "it. Give every number, label, axis, tick value, legend entry, table cell and piece of text "
    "exactly as shown, and the shapes, positions, lengths, angles and relations between objects. "
    "Do not answer or solve any question; only describe."
)

JUDGE_PROMPT_VERSION = 1  # bump when JUDGE_TEMPLATE changes (the version is part of the cache key)
JUDGE_TEMPLATE = """You are grading a model's answer to a question about an image.

Question:
{question}
{choices}
Reference answer: {gold}

Model output:
{output}

Does the model output give the same final answer as the reference answer? Ignore formatting, units
and wording; numbers must agree. Reply with exactly one word: Correct or Incorrect."""

# ------------------------------------------------------------------------------------------- recipes


class DescriberRecipe(BaseModel):
    """How an image's description is asked for: the prompts, the message layout, the parameters."""

    model_config = ConfigDict(frozen=True)

    name: str
    user: str
    system: str | None = None
    image_first: bool = False  # the image before the text in the user turn
    rgb: bool = False  # send the image converted to RGB (alpha dropped)
    temperature: float | None = 0.0  # None: not sent (the server's default)
    max_completion_tokens: int | None = None

    def params(self) -> dict[str, Any]:
        return _params(self.temperature, self.max_completion_tokens)

    def messages(self, data_url: str) -> list[dict]:
        parts = [{"type": "text", "text": self.user}, {"type": "image_url", "image_url": {"url": data_url}}]
        user = {"role": "user", "content": parts[::-1] if self.image_first else parts}
        return ([{"role": "system", "content": self.system}] if self.system else []) + [user]

    def key_fields(self) -> dict[str, Any]:
        """What besides the prompt decides the reply (none for the project's recipe, so its old entries stay valid)."""
        if (self.system, self.image_first, self.rgb, self.params()) == (None, False, False, {"temperature": 0.0}):
            return {}
        return {"recipe": self.name, "system": self.system, "image_first": self.image_first, "rgb": self.rgb,
                "params": self.params()}


@dataclass(frozen=True)
class JudgeRecipe:
    """How a verdict is asked for: `render(question=, choices=, gold=, output=)` is the user turn
    (`output` is what the task hands over: the whole output, or the extracted answer), `parse(reply)`
    reads True / False / None (no verdict) from the reply."""

    name: str
    version: int
    render: Callable[..., str]
    parse: Callable[[str], bool | None]
    system: str | None = None
    temperature: float | None = 0.0
    max_completion_tokens: int | None = None

    def params(self) -> dict[str, Any]:
        return _params(self.temperature, self.max_completion_tokens)

    def messages(self, prompt: str) -> list[dict]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + [{"role": "user", "content": prompt}]

    def key_fields(self) -> dict[str, Any]:
        if self.name == "project":
            return {}
        return {"recipe": self.name, "system": self.system, "params": self.params()}


def _params(temperature: float | None, max_completion_tokens: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if temperature is not None:
        params["temperature"] = temperature
    if max_completion_tokens is not None:
        params["max_completion_tokens"] = max_completion_tokens
    return params


_VERDICT_WORDS = {"correct": True, "yes": True, "true": True, "1": True,
                  "incorrect": False, "no": False, "false": False, "0": False}


# ------------------------------------------------------------------------------------------ settings


class LLMSettings(BaseModel):
    """Endpoint settings; build with `from_env()`. The key is masked in every repr and dump."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field("gpt-4o-mini", min_length=1)
    base_url: str | None = None  # None: the client's default (api.openai.com)
    api_key: SecretStr | None = Field(None, repr=False)
    timeout_s: float = Field(60.0, gt=0)
    retries: int = Field(4, ge=0, le=20)
    backoff_s: float = Field(1.0, ge=0)
    max_wait_s: float = Field(30.0, ge=0)
    workers: int = Field(4, ge=1, le=64)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> LLMSettings:
        """Settings from the environment (module docstring), then `overrides` (e.g. in tests)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {name: env[var] for name, var in SETTING_ENVS.items() if env.get(var)}
        values["base_url"] = next((env[v] for v in BASE_URL_ENVS if env.get(v)), None)
        values["api_key"] = next((env[v] for v in KEY_ENVS if env.get(v)), None)
        values.update(overrides)
        try:
            return cls(**values)
        except ValidationError as err:  # name the variable, never echo the input (it may be the key)
            first = err.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else "settings"
            raise FrankensteinError(f"{SETTING_ENVS.get(name, name)}: {first['msg']}") from None

    def __repr_args__(self):  # the base URL as host only: a URL may carry user:password@
        for name, value in super().__repr_args__():
            yield (name, value) if name != "base_url" else ("host", self.host)

    @property
    def host(self) -> str:
        """Where requests go, for messages: host[:port], without any credentials in the URL."""
        if not self.base_url:
            return "api.openai.com"
        parts = urlsplit(self.base_url)
        host = parts.hostname or "?"
        port = parts.netloc.rpartition(":")[2] if parts.netloc.rpartition(":")[2].isdigit() else ""
        return f"{host}:{port}" if port else host


# ------------------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class JudgeVerdict:
    """The judge's decision on one model output; `parsed` is False when the reply was no verdict."""

    correct: bool
    reply: str
    parsed: bool


def load_descriptions(path: str | os.PathLike) -> dict[str, str]:
    """A descriptions file: one JSON object, item id -> description text."""
    path = Path(path)
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FrankensteinError(f"descriptions file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise FrankensteinError(f"descriptions file {path} cannot be read: {err}") from None
    except json.JSONDecodeError as err:
        raise FrankensteinError(f"descriptions file {path} is not valid JSON: {err}") from None
    if not isinstance(table, dict):
        raise FrankensteinError(f"descriptions file {path} must hold one JSON object (item id -> text)")
    bad = [k for k, v in table.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise FrankensteinError(f"descriptions file {path}: item {bad[0]!r} has no text ({len(bad)} such)")
    return table


def descriptions_for(
    images: Mapping[str, ImageLike],
    *,
    descriptions_file: str | os.PathLike | None = None,
    endpoint: LLMEndpoint | None = None,
    recipe: DescriberRecipe | None = None,
) -> dict[str, str]:
    """The description of every item in `images` (item id -> image), in the same order.

    From `descriptions_file` (else $FRANKENSTEIN_DESCRIPTIONS) when given: every item must be there,
    and no endpoint or key is needed. Otherwise generated through `endpoint` (default: settings from
    the environment, default cache), where cached entries cost no call.
    """
    descriptions_file = descriptions_file or os.environ.get(DESCRIPTIONS_ENV) or None
    if descriptions_file is not None:
        table = load_descriptions(descriptions_file)
        missing = [str(i) for i in images if str(i) not in table]
        if missing:
            raise FrankensteinError(
                f"descriptions file {descriptions_file} has no description for item {missing[0]!r} "
                f"({len(missing)} of {len(images)} items missing)"
            )
        return {str(i): table[str(i)] for i in images}
    return (endpoint or default_endpoint()).describe_many(images, recipe=recipe)


@lru_cache(maxsize=1)
def default_endpoint() -> LLMEndpoint:
    """One endpoint per process with settings from the environment and the default cache."""
    return LLMEndpoint(LLMSettings.from_env())


class LLMEndpoint:
    """An OpenAI-compatible chat endpoint with a per-entry disk cache and a bounded retry loop.

    `sleep` is how the retry loop waits (tests pass a recorder). `calls` counts HTTP attempts made.
    """

    def __init__(
        self,
        settings: LLMSettings | None = None,
        *,
        cache_dir: str | os.PathLike | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings or LLMSettings.from_env()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
        self.calls = 0
        self._sleep = sleep
        self._lock = threading.Lock()
        self._client_instance = None

    def __repr__(self) -> str:
        s = self.settings
        return f"LLMEndpoint(model={s.model!r}, host={s.host!r}, cache_dir={str(self.cache_dir)!r})"

    # -------------------------------------------------------------------------------- descriptions

    def describe(self, item_id: str, image: ImageLike, *, recipe: DescriberRecipe | None = None) -> str:
        """The description of one item's image (cached per item id, model and recipe)."""
        return self.describe_many({item_id: image}, recipe=recipe)[str(item_id)]

    def describe_many(self, images: Mapping[str, ImageLike], *, recipe: DescriberRecipe | None = None) -> dict[str, str]:
        """Descriptions of many items (item id -> image), in input order; only misses are sent.

        Misses run on `settings.workers` threads. Each finished description is cached at once, so
        after an error a rerun sends only what is still missing.
        """
        recipe = recipe or PROJECT_DESCRIBER
        found: dict[str, str] = {}
        todo = []
        for item_id in images:
            entry = self._cached("descriptions", self._description_key(str(item_id), recipe, images[item_id]))
            if entry is not None:
                found[str(item_id)] = entry["text"]
            else:
                todo.append(item_id)
        if todo:
            self._require_key(f"the description of item {str(todo[0])!r}")
            log.info("describing %d image(s) with %s at %s (%d cached)",
                     len(todo), self.settings.model, self.settings.host, len(found))
            found.update(self._generate_descriptions(images, todo, recipe))
        return {str(i): found[str(i)] for i in images}

    def _generate_descriptions(self, images: Mapping[str, ImageLike], todo: list, recipe: DescriberRecipe) -> dict[str, str]:
        out: dict[str, str] = {}
        bar = tqdm(total=len(todo), desc="descriptions", unit="item", disable=len(todo) <= HANDFUL)
        pool = ThreadPoolExecutor(max_workers=min(self.settings.workers, len(todo)))
        try:
            futures = {pool.submit(self._generate_description, str(i), images[i], recipe): str(i) for i in todo}
            for future in as_completed(futures):
                out[futures[future]] = future.result()
                bar.update()
        finally:  # on the first error: drop what has not started; running calls finish and cache
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
        return out

    def _generate_description(self, item_id: str, image: ImageLike, recipe: DescriberRecipe) -> str:
        messages = recipe.messages(image_data_url(image, rgb=recipe.rgb))
        text = self._complete(messages, what=f"description of item {item_id!r}", params=recipe.params())
        key = self._description_key(item_id, recipe, image)
        self._store("descriptions", key, {"text": text})
        return text

    def _description_key(self, item_id: str, recipe: DescriberRecipe, image: ImageLike) -> dict[str, Any]:
        return {"kind": "description", "item_id": item_id, "model": self.settings.model, "prompt": recipe.user,
                "image": image_digest(image), **recipe.key_fields()}

    # -------------------------------------------------------------------------------------- judge

    def judge(
        self, item_id: str, *, question: str, gold: str, output: str, choices: Sequence[str] | None = None,
        recipe: JudgeRecipe | None = None,
    ) -> JudgeVerdict:
        """Whether `output` gives the same final answer as `gold` (cached like descriptions)."""
        recipe = recipe or PROJECT_JUDGE
        prompt = recipe.render(question=question, gold=gold, output=output, choices=choices)
        key = {"kind": "judge", "item_id": str(item_id), "model": self.settings.model,
               "judge_prompt_version": recipe.version, "prompt": prompt, **recipe.key_fields()}
        entry = self._cached("judge", key)
        if entry is None:
            self._require_key(f"judging item {str(item_id)!r}")
            reply = self._complete(recipe.messages(prompt), what=f"judge call for item {str(item_id)!r}", params=recipe.params())
            verdict = recipe.parse(reply)
            entry = {"reply": reply, "correct": bool(verdict), "parsed": verdict is not None}
            self._store("judge", key, entry)
        if not entry["parsed"]:
            log.warning("judge reply for item %r is no verdict; counted as incorrect", str(item_id))
        return JudgeVerdict(correct=entry["correct"], reply=entry["reply"], parsed=entry["parsed"])

    # ------------------------------------------------------------------------------ the HTTP call

    def _complete(self, messages: list[dict], *, what: str, params: Mapping[str, Any] | None = None) -> str:
        """One chat completion with the retry policy of the module docstring; returns the text.

        `params`: request parameters (default temperature 0)."""
        import openai

        s = self.settings
        attempts = s.retries + 1
        for attempt in range(attempts):
            with self._lock:
                self.calls += 1
            try:
                response = self._client().chat.completions.create(
                    model=s.model, messages=messages, **({"temperature": 0} if params is None else params))
            except openai.APIStatusError as err:
                status, retryable, detail = f"HTTP {err.status_code}", _retryable(err.status_code), _error_detail(err)
                retry_after = _retry_after(err)
            except openai.APITimeoutError:
                status, retryable, retry_after, detail = f"timeout after {s.timeout_s:g} s", True, None, ""
            except openai.APIConnectionError as err:
                status, retryable, retry_after, detail = "connection error", True, None, str(err.__cause__ or err)
            except openai.OpenAIError as err:  # e.g. a reply that is not a chat completion
                status, retryable, retry_after, detail = type(err).__name__, False, None, str(err)
            else:
                return self._reply_text(response, what)
            last = f"{status}{f' ({detail})' if detail else ''}"
            if not retryable:
                self._fail(f"{what} failed at {s.host} (model {s.model}): {last}, not retried")
            if attempt + 1 == attempts:
                break
            wait = self._wait(attempt, retry_after)
            if wait is None:
                self._fail(f"{what} failed at {s.host} (model {s.model}): {last}, and the server asks to "
                           f"wait {retry_after:g} s (more than max wait {s.max_wait_s:g} s)")
            log.warning("%s: %s; retry %d/%d in %.3g s", what, status, attempt + 1, s.retries, wait)
            self._sleep(wait)
        self._fail(f"{what} failed at {s.host} (model {s.model}) after {attempts} attempt(s); last: {last}")

    def _wait(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number `attempt + 1`; None: the server asks for too long."""
        s = self.settings
        backoff = min(s.max_wait_s, s.backoff_s * 2**attempt)
        if retry_after is None:
            return backoff
        return None if retry_after > s.max_wait_s else max(retry_after, backoff)

    def _reply_text(self, response: Any, what: str) -> str:
        choices = getattr(response, "choices", None) or []
        text = choices[0].message.content if choices and choices[0].message else None
        if not isinstance(text, str) or not text.strip():
            self._fail(f"{what}: the reply from {self.settings.host} holds no text")
        return text.strip()

    def _client(self):
        with self._lock:
            if self._client_instance is None:
                import openai

                s = self.settings
                self._client_instance = openai.OpenAI(
                    api_key=s.api_key.get_secret_value(), base_url=s.base_url,
                    timeout=s.timeout_s, max_retries=0,  # the retry loop is ours (_complete)
                )
            return self._client_instance

    def _require_key(self, what: str) -> None:
        if self.settings.api_key is None:
            raise FrankensteinError(
                f"{what} needs a call to {self.settings.host} but no API key is set: set "
                f"{' or '.join(KEY_ENVS)} (any text for a local server), or give a descriptions file"
            )

    def _fail(self, message: str):
        raise FrankensteinError(self._scrub(message))

    def _scrub(self, text: str) -> str:
        """`text` without the key, in case a server echoes it back in an error body."""
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else ""
        return text.replace(key, "***") if key else text

    # -------------------------------------------------------------------------------------- cache

    def _entry_path(self, kind: str, key: Mapping[str, Any]) -> tuple[Path, str]:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        name = f"{_safe_name(key['item_id'])}.{digest[:16]}.json"
        return self.cache_dir / kind / _safe_name(key["model"]) / name, digest

    def _cached(self, kind: str, key: Mapping[str, Any]) -> dict | None:
        path, digest = self._entry_path(kind, key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("cache entry %s is unreadable; asking again", path)
            return None
        return entry if isinstance(entry, dict) and entry.get("key") == digest else None

    def _store(self, kind: str, key: Mapping[str, Any], fields: Mapping[str, Any]) -> None:
        path, digest = self._entry_path(kind, key)
        # Of the settings only the model name (in `key`): the API key and the base URL stay out.
        write_json(path, {"key": digest, **key, **fields, "created": time.time()})


# ------------------------------------------------------------------------------------------ helpers


def image_data_url(image: ImageLike, *, rgb: bool = False) -> str:
    """`image` as a PNG data: URL (lossless, so text and thin lines in charts survive); `rgb`: alpha dropped."""
    image = _as_pil(image)
    if rgb and image.mode != "RGB":
        image = image.convert("RGB")
    elif image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_digest(image: ImageLike) -> str:
    """A hash of an image's pixels (mode, size, bytes): the same for the same picture in any file format."""
    image = _as_pil(image)
    return hashlib.sha256(f"{image.mode} {image.size}".encode() + image.tobytes()).hexdigest()[:16]


def _as_pil(image: ImageLike) -> Image.Image:
    if isinstance(image, (bytes, bytearray)):
        return Image.open(io.BytesIO(image))
    if isinstance(image, Image.Image):
        return image
    try:
        return Image.open(image)
    except (OSError, ValueError) as err:
        raise FrankensteinError(f"image {image} cannot be read: {err}") from None


def render_judge_prompt(*, question: str, gold: str, output: str, choices: Sequence[str] | None = None) -> str:
    listed = "".join(f"\n{line}" for line in option_lines(choices)) if choices else ""
    return JUDGE_TEMPLATE.format(question=question.strip(), choices=f"Choices:{listed}\n" if listed else "",
                                 gold=str(gold).strip(), output=output.strip())


def parse_verdict(reply: str) -> bool | None:
    """True / False from a judge reply's first word (Correct, Incorrect, yes, no, 1, 0); else None."""
    words = re.findall(r"[a-z0-9]+", reply.lower())
    return _VERDICT_WORDS.get(words[0]) if words else None


PROJECT_DESCRIBER = DescriberRecipe(name="project", user=DESCRIPTION_PROMPT)
PROJECT_JUDGE = JudgeRecipe(name="project", version=JUDGE_PROMPT_VERSION, render=render_judge_prompt, parse=parse_verdict)


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _retry_after(err: Any) -> float | None:
    """Seconds from a Retry-After(-ms) header; None when absent or not a number (HTTP dates: ignored)."""
    headers = getattr(getattr(err, "response", None), "headers", None) or {}
    for header, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            value = float(headers.get(header)) / scale
        except (TypeError, ValueError):
            continue
        if value >= 0:
            return value
    return None


def _error_detail(err: Any) -> str:
    """The server's error message, short, from an APIStatusError."""
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        body = inner.get("message", inner) if isinstance(inner, dict) else inner
    text = " ".join(str(body if body is not None else "").split())
    return text[:200] + ("…" if len(text) > 200 else "")


def _safe_name(text: str) -> str:
    """A file-name-safe form of an item id or model name (the digest keeps names unique)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")[:80] or "_"


def _default_cache_dir() -> Path:
    from frankenstein_tasks.caches import cache_root

    return cache_root() / "llm"
