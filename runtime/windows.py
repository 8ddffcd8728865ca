"""Stitching the sliding windows of a long text back into one token sequence."""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Encoding

from edgebert.errors import InternalError


def stitch_windows(full: Encoding, windows: Sequence[Encoding], stride: int) -> list[tuple[int, int]]:
    """Map every token of the untruncated single-text encoding to (window, position in that window).

    Windows come from the tokenizer's overflow (window k+1 starts ``stride`` content tokens before
    window k ends). A token covered by several windows is taken from the one where it has the most
    context on both sides (ties: the earlier window), so overlaps yield each token exactly once.
    """
    content = [i for i, s in enumerate(full.sequence_ids) if s is not None]
    best: dict[int, tuple[int, int, int]] = {}  # content index -> (context, window, position)
    start = 0
    spans: list[list[int]] = []
    for k, w in enumerate(windows):
        positions = [i for i, s in enumerate(w.sequence_ids) if s is not None]
        spans.append(positions)
        for j, pos in enumerate(positions):
            g = start + j
            if g >= len(content) or w.ids[pos] != full.ids[content[g]]:
                raise InternalError(
                    "internal error: the tokenizer's windows do not line up with the whole text; "
                    "report this with the text, or use long_text='truncate'."
                )
            context = min(j, len(positions) - 1 - j)
            if g not in best or context > best[g][0]:
                best[g] = (context, k, pos)
        start += len(positions) - stride
    if len(best) != len(content):
        raise InternalError("internal error: the tokenizer's windows do not cover the whole text.")
    mapping: list[tuple[int, int]] = []
    content_index = {p: g for g, p in enumerate(content)}
    first, last = (content[0], content[-1]) if content else (len(full.ids), -1)
    tail = [i for i, s in enumerate(windows[-1].sequence_ids) if s is None and (not spans[-1] or i > spans[-1][-1])]
    head = [i for i, s in enumerate(windows[0].sequence_ids) if s is None and (not spans[0] or i < spans[0][0])]
    for i in range(len(full.ids)):
        if i < first:
            mapping.append((0, head[i]))
        elif i > last:
            mapping.append((len(windows) - 1, tail[i - last - 1]))
        else:
            index = content_index.get(i)
            if index is None:
                raise InternalError("internal error: a special token inside the text cannot be stitched.")
            _, k, pos = best[index]
            mapping.append((k, pos))
    return mapping
