"""Render chat messages into a prompt with the model's own Jinja chat template.

The template comes from the GGUF metadata (`tokenizer.chat_template`). It is rendered in a
sandboxed Jinja environment, as Hugging Face tokenizers do, with `messages`,
`add_generation_prompt`, `bos_token` and `eos_token`. Pure functions; no model needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tokenrelay.errors import ErrorCode, ProviderError
from tokenrelay.i18n import tr
from tokenrelay.providers.base import ChatMessage
from tokenrelay.providers.llama_tools import format_call, format_result

# Used when a GGUF carries no template: ChatML, which SmolLM2 and many small models use.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _raise_exception(message: str) -> NoReturn:
    raise TemplateError(message)


def message_to_dict(message: ChatMessage) -> dict[str, Any]:
    """One message as the plain dict chat templates expect.

    An assistant turn that asked for tools is shown to the model in the `<tool_call>` form the
    constrained tool mode makes it write, and a tool's result inside `<tool_response>` (see
    `llama_tools`), so it sees its own format.
    """
    content = message.content
    if message.tool_calls:
        calls = "\n".join(format_call(call) for call in message.tool_calls)
        content = f"{content}\n{calls}" if content else calls
    elif message.role == "tool":
        content = format_result(content)
    out: dict[str, Any] = {"role": message.role, "content": content}
    if message.name is not None:
        out["name"] = message.name
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def render_chat(
    template: str,
    messages: Sequence[ChatMessage],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> str:
    """The prompt text for `messages`, ending with the assistant turn's opening."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_exception
    try:
        compiled = env.from_string(template)
        return compiled.render(
            messages=[message_to_dict(m) for m in messages],
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
        )
    except TemplateError as e:
        raise ProviderError(
            tr("the local model could not read this conversation: {detail}", detail=str(e)),
            suggestion=tr("start a new conversation"),
            details={
                "operator": "roles must alternate as the model expects, or use a GGUF"
                " with a working tokenizer.chat_template"
            },
            code=ErrorCode.PROVIDER_ERROR,
            retryable=False,
        ) from e
