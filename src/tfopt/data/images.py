"""Folders of images, one subfolder per class (``image_dataset_from_directory``'s layout).

``root/<class>/*.png`` (split three ways at ingest) or ``root/train/<class>/...``
with an optional ``root/test/<class>/...`` (the test split kept as is). Class
names, sorted, become label ids 0..k-1. JPEG, PNG, BMP and GIF (first frame)
are decoded with Pillow in a thread pool, converted to ``channels`` (1 or 3)
and resized to ``image_size``, and stored as uint8. Hidden files and folders
and files with other extensions are ignored and counted; a corrupt or
truncated image stops ingest with its path, or is skipped and counted when
``skip_corrupt`` is set, so it never becomes a silently wrong example.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from tfopt.data import subset
from tfopt.data.readers import Chunk, rows_per_chunk
from tfopt.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
_MAX_LISTED = 20  # skipped files named in schema.json


@dataclass
class ImageFolder:
    """What a scan of an image folder found."""

    root: str
    class_names: list[str]
    files: dict[str | None, list[tuple[str, int]]]  # split -> [(path, label)]
    ignored_hidden: int = 0
    ignored_other: int = 0
    skipped: list[str] = field(default_factory=list)
    sizes: dict[tuple[int, int], int] = field(default_factory=dict)  # (h, w) before resize

    def size_distribution(self) -> dict:
        """The images' sizes as read (before ``image_size`` resized them): the most common
        ones with their counts, and the range of heights and widths."""
        if not self.sizes:
            return {}
        common = sorted(self.sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:_MAX_LISTED]
        hs, ws = [h for h, _ in self.sizes], [w for _, w in self.sizes]
        return {
            "distinct": len(self.sizes),
            "most_common": [{"height": h, "width": w, "count": n} for (h, w), n in common],
            "height": {"min": min(hs), "max": max(hs)},
            "width": {"min": min(ws), "max": max(ws)},
        }

    def stats(self) -> dict:
        return {
            "source_layout": "image_folder",
            "images": {
                "read": sum(len(v) for v in self.files.values()) - len(self.skipped),
                "skipped_corrupt": len(self.skipped),
                "skipped_files": self.skipped[:_MAX_LISTED],
                "ignored_hidden": self.ignored_hidden,
                "ignored_non_image": self.ignored_other,
            },
        }


def _subdirs(path: str) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def is_image_folder(root: str) -> bool:
    """Whether local ``root`` looks like an image folder: a class subfolder holding an image."""
    if "://" in root or not os.path.isdir(root):
        return False
    for sub in _subdirs(root):
        for _, dirs, names in os.walk(os.path.join(root, sub)):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            if any(n.lower().endswith(IMAGE_EXTENSIONS) for n in names):
                return True
    return False


def scan(root: str) -> ImageFolder:
    """List the images of ``root`` by split and class; fail on an unusable layout."""
    subs = _subdirs(root)
    split_layout = "train" in subs and set(subs) <= {"train", "test", "validation"}
    if "validation" in subs and split_layout:
        raise DataError(
            f"{root}/validation: a validation folder is not supported; put its images in "
            "train/ (ingest splits validation off train)"
        )
    splits = {"trainval": "train", "test": "test"} if split_layout else {None: ""}
    folders = {s: os.path.join(root, d) for s, d in splits.items() if d in subs or not d}
    found = ImageFolder(root, [], {})
    per_split: dict[str | None, dict[str, list[str]]] = {}
    for split, folder in folders.items():
        per_split[split] = {}
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.startswith("."):
                found.ignored_hidden += 1
            elif entry.is_file():
                found.ignored_other += 1
        for cls in _subdirs(folder):
            per_split[split][cls] = _class_files(os.path.join(folder, cls), found)
    train_split = "trainval" if split_layout else None
    names = sorted(per_split[train_split])
    if not names:
        raise DataError(f"{folders[train_split]}: no class subfolders")
    for cls in names:
        if not per_split[train_split][cls]:
            raise DataError(
                f"{os.path.join(folders[train_split], cls)}: class folder holds no images "
                f"({', '.join(e.upper().lstrip('.') for e in IMAGE_EXTENSIONS)})"
            )
    if len(names) < 2:
        raise DataError(
            f"{folders[train_split]}: found a single class folder ({names[0]!r}); "
            "classification needs at least 2"
        )
    extra = sorted(set(per_split.get("test", {})) - set(names))
    if extra:
        raise DataError(
            f"{folders['test']}: class folder(s) {', '.join(extra)} have no train/ counterpart"
        )
    found.class_names = names
    ids = {c: i for i, c in enumerate(names)}
    found.files = {
        s: [(p, ids[c]) for c in sorted(by_class) for p in by_class[c]]
        for s, by_class in per_split.items()
    }
    return found


def _class_files(folder: str, found: ImageFolder) -> list[str]:
    out = []
    for dirpath, dirs, names in os.walk(folder):
        hidden = [d for d in dirs if d.startswith(".")]
        found.ignored_hidden += len(hidden)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in sorted(names):
            if n.startswith("."):
                found.ignored_hidden += 1
            elif n.lower().endswith(IMAGE_EXTENSIONS):
                out.append(os.path.join(dirpath, n))
            else:
                found.ignored_other += 1
    return out


def _decode(path: str, size: tuple[int, ...] | None, channels: int):
    """``(uint8 [h, w, channels], (h, w) as read)``, or the error text for a corrupt file."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            opened.load()
            img: Image.Image = opened
            mode = "L" if channels == 1 else "RGB"
            read_size = (img.size[1], img.size[0])
            if img.mode != mode:
                img = img.convert("RGBA" if img.mode == "P" else img.mode).convert(mode)
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ...
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return arr.reshape(arr.shape[0], arr.shape[1], channels), read_size


def _probe(path: str):
    """``(mode, (h, w))`` from the header only, or None when unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.mode, (img.size[1], img.size[0])
    except Exception:
        return None


def read_image_folder(
    root: str,
    image_size: tuple[int, ...] = (),
    channels: int = 0,
    skip_corrupt: bool = False,
    max_examples: int = 0,
    seed: int = 42,
    found: ImageFolder | None = None,
) -> Iterator[Chunk]:
    """Stream an image folder as uint8 chunks ``[n, h, w, channels]``.

    ``image_size`` () keeps the images' size (they must all share it);
    ``channels`` 0 picks 3 when any image has colour, else 1. ``found`` (from
    :func:`scan`) receives the skip counts.
    """
    found = found or scan(root)
    masks = subset.split_subsets(
        {s: np.asarray([y for _, y in v], np.int64) for s, v in found.files.items()},
        max_examples,
        seed,
    )
    files = {
        s: v if (mask := masks[s]) is None else [f for f, k in zip(v, mask, strict=True) if k]
        for s, v in found.files.items()
    }
    size = tuple(image_size) or None
    if not channels or size is None:
        channels, size = _infer(files, channels, size, skip_corrupt, found)
    workers = max(1, min(8, os.cpu_count() or 1))
    step = rows_per_chunk(size[0] * size[1] * channels)
    with ThreadPoolExecutor(workers) as pool:
        for split, items in files.items():
            order = np.random.default_rng((seed, 7)).permutation(len(items))
            items = [items[i] for i in order]  # mix classes within the ingest shuffle window
            for start in range(0, len(items), step):
                block = items[start : start + step]
                decoded = list(pool.map(lambda f: _decode(f[0], size, channels), block))
                yield _chunk(
                    root, block, decoded, start, split, (*size, channels), skip_corrupt, found
                )


def _infer(files, channels, size, skip_corrupt, found):
    colour = False
    sizes: dict[tuple[int, int], str] = {}  # (h, w) -> the first file of that size
    for items in files.values():
        for path, _ in items:
            probe = _probe(path)
            if probe is None:
                continue  # reported (or skipped) when decoded
            mode, hw = probe
            colour = colour or mode not in ("1", "L", "LA", "I", "I;16", "F")
            sizes.setdefault(hw, path)
            if size is None and len(sizes) > 1:
                (a, pa), (b, pb) = list(sizes.items())[:2]
                raise DataError(
                    f"{found.root}: images differ in size ({pa} is {a[0]}x{a[1]}, {pb} is "
                    f"{b[0]}x{b[1]}); set image_size to resize them at ingest"
                )
    if not sizes:
        raise DataError(f"{found.root}: none of the image files can be read")
    return channels or (3 if colour else 1), size or next(iter(sizes))


def _chunk(root, block, decoded, start, split, shape, skip_corrupt, found) -> Chunk:
    keep = []
    for i, ((path, _), arr) in enumerate(zip(block, decoded, strict=True)):
        if isinstance(arr, str):
            if not skip_corrupt:
                raise DataError(
                    f"{path}: not a readable image ({arr}); fix or remove it, or set "
                    "skip_corrupt_images to skip such files"
                )
            found.skipped.append(path)
            log.warning("skipping corrupt image %s (%s)", path, arr)
        else:
            keep.append(i)
    x = np.empty((len(keep), *shape), np.uint8)
    for j, i in enumerate(keep):
        x[j], read_size = decoded[i]
        found.sizes[read_size] = found.sizes.get(read_size, 0) + 1
    y = np.asarray([block[i][1] for i in keep], np.int64)
    return Chunk(x, y, root, "image", np.asarray([start + i for i in keep]), split)
