"""Image and mask reading, and atomic writes: the one place for these conversions.

Images come back as uint8 RGB arrays (H, W, 3) with EXIF orientation applied; masks as uint8
arrays (H, W) with values in {0, 1}. There is no ignore label inside a glass mask: any non-zero
value (1, 255, a palette index, a coloured pixel) is glass.
"""

from __future__ import annotations

import io as _io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import DataError

JPEG_MAX_SIDE = 65535  # the JPEG format stores width and height in 16 bits
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")

# Decompression-bomb guard: 64 megapixels is far above any camera frame we expect to segment. The
# GLASSGEM_MAX_PIXELS environment variable raises (or lowers) it for every command.
MAX_PIXELS = 64_000_000
MAX_PIXELS_ENV = "GLASSGEM_MAX_PIXELS"


def _max_pixels(max_pixels: int) -> int:
    """`max_pixels`, or GLASSGEM_MAX_PIXELS when set and the default is asked for."""
    text = os.environ.get(MAX_PIXELS_ENV)
    if max_pixels != MAX_PIXELS or not text:
        return max_pixels
    try:
        value = int(float(text))
    except ValueError:
        raise DataError(f"{MAX_PIXELS_ENV}={text!r}: expected a number of pixels, e.g. 200000000") from None
    if value < 1:
        raise DataError(f"{MAX_PIXELS_ENV}={text!r}: expected a number of pixels >= 1")
    return value


def not_a_file(path: Path) -> str:
    """Why `path`, which is not a regular file, cannot be read as one (a folder, a FIFO, missing ...)."""
    import stat

    try:
        mode = path.stat().st_mode
    except OSError:
        return "a broken symbolic link or a symlink loop" if path.is_symlink() else "file not found"
    if stat.S_ISDIR(mode):
        return "a folder, not an image file"
    kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    return f"{kind}, not a regular file; glassgem reads only regular files"


def _open(path: Path, max_pixels: int) -> Image.Image:
    path = Path(path)
    max_pixels = _max_pixels(max_pixels)
    if not path.is_file():
        raise DataError(f"{path}: {not_a_file(path)}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: cannot read image (empty file, 0 bytes)")
    try:
        img = Image.open(path)
        w, h = img.size
        if w * h > max_pixels:
            raise DataError(
                f"{path}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} "
                f"(possible decompression bomb; if the image is genuine, set {MAX_PIXELS_ENV}={w * h} in the "
                "environment)"
            )
        img.load()
    except DataError:
        raise
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: refused as a possible decompression bomb ({e})") from None
    except Exception as e:  # PIL raises many types for truncated/corrupt files
        raise DataError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None
    return img


def _to_uint8_array(img: Image.Image) -> np.ndarray:
    """Any PIL mode -> uint8 array; 16-bit and float images are rescaled, not clipped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if img.mode == "F" and arr.max() <= 1.0:
            hi = 1.0
        return np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.asarray(img)


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image as uint8 RGB (H, W, 3), EXIF orientation applied.

    Grayscale, palette, RGBA (composited on white), CMYK and 16-bit images are converted.
    Raises DataError naming the file for anything unreadable.
    """
    path = Path(path)
    img = _open(path, max_pixels)
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:
        pass  # a broken EXIF block should not make a good image unreadable
    return pil_to_rgb(img)


EXIF_ORIENTATION = 0x0112
ROTATING = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def exif_note(orientation: int) -> str:
    """What an EXIF orientation tag other than 1 does to a photo beside its mask, for messages ('' for 1)."""
    if orientation in (None, 1) or not 2 <= orientation <= 8:
        return ""
    what = "rotates" if orientation in ROTATING else "flips or turns"
    return (
        f"the photo's EXIF orientation tag ({orientation}) {what} it when read, the mask is used as stored; "
        "store the photo upright without the tag, or turn the mask to match"
    )


def exif_orientation(path: str | os.PathLike) -> int:
    """The EXIF orientation tag of an image file (1 when absent or unreadable)."""
    try:
        with Image.open(path) as img:
            value = img.getexif().get(EXIF_ORIENTATION, 1)
        return int(value) if isinstance(value, int) else 1
    except Exception:  # the caller reads the image anyway and reports what is wrong with it
        return 1


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """A loaded PIL image of any mode -> uint8 RGB (H, W, 3), as load_image converts (no EXIF step)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        gray = _to_uint8_array(img)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    arr = np.asarray(img.convert("RGB"))
    return np.ascontiguousarray(arr)


def mask_to_binary(arr: np.ndarray) -> np.ndarray:
    """Any mask array (0/1, 0/255, palette indices, RGB(A), 16-bit) -> uint8 {0,1}.

    RGB(A) masks are reduced to the max over colour channels (alpha ignored). Then the GSD-S evaluation
    convention (docs/original.md#metrics): if max > 127 the values are divided by 255; glass = value > 0.5.
    So 0/1, 0/255 and JPEG-noisy 0/255 agree.
    """
    a = np.asarray(arr)
    if a.ndim == 3:
        a = a[..., :3].max(axis=2) if a.shape[2] >= 3 else a[..., 0]
    if a.dtype == bool:
        return a.astype(np.uint8)
    if a.dtype.kind in "ui":
        # Same rule in integer form, without a float64 copy (the evaluator calls this per image):
        # v / 255 > 0.5  <=>  v > 127 for integers; otherwise v > 0.5  <=>  v > 0.
        return (a > (127 if a.max(initial=0) > 127 else 0)).astype(np.uint8)
    a = a.astype(np.float64)
    if a.max(initial=0) > 127:
        a = a / 255.0
    return (a > 0.5).astype(np.uint8)


def load_mask(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read a glass mask as uint8 (H, W) in {0, 1}. No EXIF transpose: masks are stored as drawn."""
    path = Path(path)
    img = _open(path, max_pixels)
    if img.mode == "P":
        # Palette masks: index 0 is background, any other index is glass.
        return (np.asarray(img) > 0).astype(np.uint8)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return mask_to_binary(np.asarray(img, dtype=np.float64))
    if img.mode == "1":
        return np.asarray(img).astype(np.uint8)
    return mask_to_binary(np.asarray(img.convert("RGB") if img.mode not in ("L", "RGB") else img))


def load_prediction(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read a predicted glass map as stored, for scoring (glassgem.evaluation.metrics says how values map to [0, 1]).

    1-bit and 8-bit files (0/1, 0/255 or a soft 0..255 map) -> uint8 (H, W); 16-bit files -> float32
    value/65535; 32-bit float files -> float32 as stored. Palette files give their indices; colour
    files the max over colour channels (alpha ignored), as for masks.
    """
    path = Path(path)
    img = _open(path, max_pixels)
    if img.mode == "1":
        return np.asarray(img).astype(np.uint8)
    if img.mode in ("L", "P"):
        return np.asarray(img)
    if img.mode.startswith("I;16"):
        return (np.asarray(img, dtype=np.float32) / 65535.0).astype(np.float32)
    if img.mode == "I":
        a = np.asarray(img)
        return (
            a.astype(np.uint8)
            if 0 <= a.min(initial=0) and a.max(initial=0) <= 255
            else (np.clip(a, 0, 65535).astype(np.float32) / np.float32(65535.0))
        )
    if img.mode == "F":
        return np.asarray(img, dtype=np.float32)
    return np.asarray(img.convert("RGB")).max(axis=2)


def read_mask_values(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The raw single-channel values of a mask file (for data checks on non-binary values)."""
    img = _open(Path(path), max_pixels)
    a = np.asarray(img)
    if a.ndim == 3:
        a = a[..., :3].max(axis=2)
    return a


# ---------------------------------------------------------------------------------------------
# Atomic writes: write to a temporary file in the same folder, fsync, then rename over the target.


def atomic_write(path: str | os.PathLike, write: Callable[[_io.BufferedWriter], object]) -> Path:
    """Write `path` through `write(file)` all or nothing. An OSError (a full disk, a folder in the way) names
    `path`, never the temporary file."""
    path = Path(path)
    try:
        return _atomic_write(path, write)
    except OSError as e:
        if e.filename == str(path):
            raise
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None  # the errno picks the subclass


def _atomic_write(path: Path, write: Callable[[_io.BufferedWriter], object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def is_temp_name(name: str) -> bool:
    """A temporary file of atomic_write: `.<target name>.<random>.tmp`."""
    return name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 3


def remove_stale_temps(folder: str | os.PathLike, min_age_s: float = 0.0) -> list[Path]:
    """Delete atomic_write's temporary files that a killed write left in `folder` (not below it), if they are
    at least `min_age_s` old (another process may be writing there right now). -> the files removed."""
    import time

    folder, now = Path(folder), time.time()
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        try:
            if is_temp_name(e.name) and e.is_file(follow_symlinks=False) and now - e.stat().st_mtime >= min_age_s:
                os.unlink(e.path)
                removed.append(Path(e.path))
        except OSError:
            pass
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """UTF-8 text; file names that are not UTF-8 (Python keeps their bytes as surrogates) are written with
    backslash escapes (\\udcff) instead of failing after all the work is done."""
    return atomic_write_bytes(path, text.encode("utf-8", errors="backslashreplace"))


def save_image(path: str | os.PathLike, arr: np.ndarray | Image.Image, **save_kwargs) -> Path:
    """Atomically save an image; the format follows the file extension."""
    path = Path(path)
    img = arr if isinstance(arr, Image.Image) else Image.fromarray(np.asarray(arr))
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown image extension {path.suffix!r}")

    # Encode in memory, then write the bytes with Python's file object, which retries short writes and raises
    # on a full disk. Handed a real file, Pillow's encoders write to its descriptor in C and ignore a short
    # final write: a full disk published a truncated JPEG as written.
    if fmt == "JPEG" and max(img.size) > JPEG_MAX_SIDE:
        raise DataError(
            f"{path}: {img.size[0]}x{img.size[1]} is beyond the JPEG format's limit of {JPEG_MAX_SIDE} "
            "pixels a side; this picture cannot be written as a JPEG"
        )
    buf = _io.BytesIO()
    img.save(buf, format=fmt, **save_kwargs)
    return atomic_write_bytes(path, buf.getvalue())


def save_mask(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Save a {0,1} (or bool) mask as a 0/255 single-channel PNG, atomically."""
    m = (np.asarray(mask) > 0).astype(np.uint8) * 255
    return save_image(path, Image.fromarray(m, mode="L"))
