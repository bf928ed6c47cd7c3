"""The ``folder`` data set's files: its layout, a header check of every image, and a loader that names
the file it cannot read.

torchvision's ImageFolder reads ``<root>/<class>/<image>``: every subfolder of ``root`` is a class
(hidden ones too) and needs at least one image; images directly in ``root`` are not read.
``image_files`` checks that layout with torchvision's own ``find_classes`` and ``make_dataset``, so it
sees what loading sees.

A bad image is found in one of two places:

- ``check_images``, from ``GANDataModule.check()`` (before the Trainer starts and before the run
  folder is written), opens every image's header and ``verify()``s it, decoding no pixels:
  unidentifiable files, decompression bombs and truncated PNG/WebP files fail there. A JPEG that does
  not end with its end-of-image marker is also decoded at 1/8 scale, which tells a truncated file
  from one with trailing bytes.
- ``read_rgb``, ImageFolder's loader, catches what only decoding shows (a truncated BMP, GIF or TIFF,
  or a file changed since the check) and raises ``UnreadableImageError`` naming the file, also from
  inside a DataLoader worker.

A bad image is an error, not a skip: a training set that silently lost images, or a class that lost
all of them, is worse than one line naming the files to delete.

PIL and torchvision are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import TYPE_CHECKING, Iterator, Sequence

from gan_lightning.errors import DataError

if TYPE_CHECKING:
    from PIL.Image import Image

_JPEG_END = b"\xff\xd9"  # the EOI marker that ends every complete JPEG stream
_SHOW = 3  # files named in one message; the rest are counted


class UnreadableImageError(DataError):
    """An image file PIL cannot read; the message names it.

    A DataLoader worker's exception comes back to the main process as ``type(e)(text)`` where
    ``text`` is "Caught UnreadableImageError in DataLoader worker process 0. Original Traceback ...",
    ending with the line ``<module>.UnreadableImageError: <message>``. The constructor keeps only
    ``<message>``, so the user still sees one line, with or without workers.
    """

    def __init__(self, message: str) -> None:
        tag = f"{type(self).__module__}.{type(self).__qualname__}: "
        original = [line[len(tag):] for line in message.splitlines() if line.startswith(tag)]
        super().__init__(original[-1] if original else message)


@contextlib.contextmanager
def _refusing_bombs() -> Iterator[None]:
    """PIL warns (and still decodes) above ``Image.MAX_IMAGE_PIXELS`` and raises only above twice that:
    make the warning an error too, so no image over the limit is ever decoded."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _reason(e: BaseException, path: str) -> str:
    """``ExceptionType: first line of its message``, without the path the caller names anyway."""
    text = (str(e).strip().splitlines() or [""])[0]
    text = text.replace(repr(path), "").replace(path, "").strip(" :")
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _some(items: Sequence[str]) -> str:
    """The first few items and how many more: the message stays one readable line."""
    shown = ", ".join(items[:_SHOW])
    return shown if len(items) <= _SHOW else f"{shown} and {len(items) - _SHOW} more"


def image_files(root: str) -> list[str]:
    """The image files an ImageFolder at ``root`` reads; DataError unless the layout is usable.

    Args:
        root: an existing folder, meant to hold one subfolder per class.

    Returns:
        Paths of every image, class by class in ImageFolder's order.

    Raises:
        DataError: no class subfolders (saying what was found instead), or a class subfolder with
            no image in it (ImageFolder refuses empty classes).
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, has_file_allowed_extension, make_dataset

    expected = f"it must hold one subfolder per class ({os.path.join(root, '<class>', '<image>')})"
    loose = sum(1 for e in os.scandir(root) if e.is_file() and has_file_allowed_extension(e.name, IMG_EXTENSIONS))
    try:
        classes, class_to_idx = find_classes(root)
    except FileNotFoundError:  # no subfolder at all
        found = f"{loose} images but no class subfolders" if loose else "no class subfolders and no images"
        example = os.path.join(root, "all", "")
        raise DataError(f"--data_root {root} holds {found}; {expected}: for one class, put the images in "
                        f"{example}") from None
    samples = make_dataset(root, class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    filled = {idx for _, idx in samples}
    empty = [os.path.join(root, c) for c in classes if class_to_idx[c] not in filled]
    if empty:
        unread = f"; the {loose} images directly in {root} are not read" if loose else ""
        raise DataError(
            f"class subfolder {_some(empty)} holds no images ({' '.join(IMG_EXTENSIONS)}); every subfolder of "
            f"--data_root is a class and needs at least one image: add images or remove the folder{unread}"
        )
    return [path for path, _ in samples]


def image_problem(path: str) -> str | None:
    """Why PIL cannot read the image at ``path`` (one line), or None; decodes no pixels of a good PNG or JPEG.

    ``verify()`` checks a PNG's or WebP's chunks (truncation included) but only the header of most
    other formats; a JPEG missing its end marker is decoded at 1/8 scale, which raises when the
    data stops early and passes a complete file followed by extra bytes.
    """
    from PIL import Image

    try:
        with _refusing_bombs():
            with Image.open(path) as im:
                image_format = im.format
                im.verify()
            if image_format == "JPEG" and not _ends_with(path, _JPEG_END):
                with Image.open(path) as im:
                    im.draft("RGB", (1, 1))  # the smallest DCT scale: every byte is still read
                    im.load()
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ... for bad files
        return _reason(e, path)
    return None


def _ends_with(path: str, marker: bytes) -> bool:
    with open(path, "rb") as f:
        if f.seek(0, os.SEEK_END) < len(marker):
            return False
        f.seek(-len(marker), os.SEEK_END)
        return f.read() == marker


def check_images(paths: Sequence[str], root: str) -> None:
    """Raise DataError naming the images under ``root`` that PIL cannot read (see ``image_problem``)."""
    from PIL import Image

    bad = [(path, why) for path in paths if (why := image_problem(path)) is not None]
    if not bad:
        return
    hint = ""
    if any("DecompressionBomb" in why for _, why in bad):
        limit = Image.MAX_IMAGE_PIXELS
        hint = f"; images over {limit} pixels (PIL's Image.MAX_IMAGE_PIXELS) are not decoded: downscale them"
    raise DataError(
        f"{len(bad)} of {len(paths)} images under {root} cannot be read: "
        f"{_some([f'{path} ({why})' for path, why in bad])}; delete or replace them{hint}"
    )


def read_rgb(path: str) -> Image:
    """ImageFolder's loader: the image at ``path`` as RGB.

    Raises:
        UnreadableImageError: PIL cannot decode it (corrupt, truncated, over the decompression-bomb
            limit); the message names the file.
    """
    from PIL import Image

    try:
        with _refusing_bombs(), open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except Exception as e:
        raise UnreadableImageError(
            f"image {path} cannot be read ({_reason(e, path)}); delete or replace it and run again"
        ) from e
