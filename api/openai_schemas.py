"""Request and response bodies of the OpenAI-compatible routes, in OpenAI's own shapes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from api.schemas import WebhookUrl
from common.schemas import Citation, Name, RequestModel, SearchFilter, SearchMode, Text

# The routes whose errors are OpenAI error objects (see api.errors).
OPENAI_PATHS = ("/v1/chat/completions", "/v1/models", "/v1/embeddings")
CHAT_MODEL = "ragq"
EMBEDDING_MODEL = "ragq-embedding"
JOB_HEADER = "X-Ragq-Job-Id"
MAX_MESSAGES = 256
MAX_EMBEDDING_INPUTS = 2048
ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}
# Chat Completions fields ragq does not serve: sent with a value that asks for them, each is a
# 400 rather than silently ignored. The value that means "off" (None, False, n=1, no tools) passes.
UNSUPPORTED: dict[str, str] = {
    "tools": "tool calling",
    "tool_choice": "tool calling",
    "parallel_tool_calls": "tool calling",
    "functions": "function calling",
    "function_call": "function calling",
    "n": "more than one choice (n > 1)",
    "logprobs": "log probabilities",
    "top_logprobs": "log probabilities",
    "logit_bias": "logit bias",
    "audio": "audio output",
    "modalities": "output modalities other than text",
    "response_format": "structured output (response_format)",
    "prediction": "predicted outputs",
    "web_search_options": "web search",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
OFF_VALUES: tuple[object, ...] = (None, False, [], {}, "none", "text", ["text"])


def is_openai_path(path: str) -> bool:
    """Whether a request path belongs to the OpenAI-compatible routes."""
    return any(path == p or path.startswith(p + "/") for p in OPENAI_PATHS)


class OpenAIErrorInfo(BaseModel):
    """OpenAI's error object; `code` is ragq's machine-readable code."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    """The body of every error answer of the OpenAI-compatible routes."""

    error: OpenAIErrorInfo


def openai_error(status: int, code: str, message: str, param: str | None = None) -> OpenAIErrorBody:
    """An OpenAI error body for a status and ragq's error code."""
    kind = ERROR_TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")
    return OpenAIErrorBody(
        error=OpenAIErrorInfo(message=message, type=kind, param=param, code=code)
    )


class ModelCard(BaseModel):
    """A model a client may name."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "ragq"


class ModelList(BaseModel):
    """The models `/v1/chat/completions` and `/v1/embeddings` serve."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class TextPart(RequestModel):
    """A part of a message's content; only `text` parts are served."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: Name
    text: Text | None = None


class ChatMessage(RequestModel):
    """One message of the conversation."""

    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[TextPart] | None = None
    name: Name | None = None


class StreamOptions(RequestModel):
    """Options of a streamed answer."""

    include_usage: bool | None = None


class RagqOptions(RequestModel):
    """ragq's retrieval options, sent as `extra_body={"ragq": {...}}` by the SDKs."""

    top_k: int = Field(default=5, ge=1, description="At most RAGQ_MAX_TOP_K.")
    mode: SearchMode | None = Field(default=None, strict=False)
    filter: SearchFilter | None = None
    deadline_s: float | None = Field(default=None, gt=0)
    webhook_url: WebhookUrl | None = None
    min_relevance: float | None = Field(default=None, ge=0.0, le=1.0)


StopText = Annotated[Name, StringConstraints(min_length=1)]
Stop = Annotated[list[StopText], Field(max_length=4)]


class ChatCompletionIn(RequestModel):
    """A Chat Completions request: the answer is retrieved from the tenant's documents."""

    model: Name = Field(description="A model `GET /v1/models` lists (`ragq`).")
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: StopText | Stop | None = None
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    user: Name | None = None
    ragq: RagqOptions | None = Field(
        default=None, description="Retrieval options (an extension; `extra_body` in the SDKs)."
    )

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        """400 for a feature ragq does not serve; drop the fields that only say "off"."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, feature in UNSUPPORTED.items():
            if name not in data:
                continue
            value = data.pop(name)
            off = value in OFF_VALUES or (name == "n" and value == 1)
            if name in ("presence_penalty", "frequency_penalty") and value in (0, 0.0):
                off = True
            if not off:
                raise PydanticCustomError(
                    "unsupported",
                    "{name}: ragq does not support {feature}",
                    {"name": name, "feature": feature},
                )
        return data


class UrlCitation(BaseModel):
    """Where the answer cites a document: the span in the content, and the document."""

    start_index: int
    end_index: int
    title: str
    url: str


class Annotation(BaseModel):
    """An annotation of the answer, OpenAI's `url_citation`."""

    type: Literal["url_citation"] = "url_citation"
    url_citation: UrlCitation


class AssistantMessage(BaseModel):
    """The answer."""

    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None
    annotations: list[Annotation] = Field(default_factory=list)


class Choice(BaseModel):
    """The one choice of a completion."""

    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class CompletionUsage(BaseModel):
    """Tokens of the prompt (passages and conversation) and of the answer."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


CITATIONS_HELP = (
    "ragq's extension: the passages the model was given, as an answer job's result lists them "
    "(cited ones first, numbered as the content's [n] markers)."
)


class ChatCompletion(BaseModel):
    """A complete answer, `chat.completion`."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    citations: list[Citation] = Field(description=CITATIONS_HELP)
    system_fingerprint: str | None = None


class Delta(BaseModel):
    """New content of a streamed answer (annotations only in the last one)."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    annotations: list[Annotation] | None = None


class ChunkChoice(BaseModel):
    """The one choice of a chunk."""

    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One event of a streamed answer, `chat.completion.chunk`."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    citations: list[Citation] | None = Field(default=None, description=CITATIONS_HELP)
    system_fingerprint: str | None = None


class EmbeddingsIn(RequestModel):
    """An Embeddings request: text(s) to embed with the model ragq indexes documents with."""

    input: Text | list[Text] = Field(description="One text, or a list of up to 2048 texts.")
    model: Name = Field(description="A model `GET /v1/models` lists (`ragq-embedding`).")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: Name | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_token_ids(cls, data: Any) -> Any:
        """400 for token ids (tiktoken's): ragq embeds text with its own model's tokenizer."""
        if isinstance(data, dict):
            value = data.get("input")
            items = value if isinstance(value, list) else [value]
            if any(isinstance(item, int | list) and not isinstance(item, bool) for item in items):
                raise PydanticCustomError(
                    "unsupported",
                    "input: send text, not token ids (with LangChain's OpenAIEmbeddings, set "
                    "check_embedding_ctx_length=False)",
                )
        return data


class Embedding(BaseModel):
    """One input's vector (a list of floats, or base64 of little-endian float32)."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    """Tokens of the inputs, by the embedding model's tokenizer."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    """The inputs' vectors, in input order."""

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
