"""Metric writers: a JSON-lines file and TensorBoard event files, without TensorFlow.

TensorBoard reads `events.out.tfevents.*` files: TFRecords (length, masked CRC32C of the
length, payload, masked CRC32C of the payload) whose payloads are `Event` protocol buffers.
Scalars and images need four messages, encoded here by hand:

  Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
  Summary { repeated Value value = 1; }
  Value   { string tag = 1; float simple_value = 2; Image image = 4; }
  Image   { int32 height = 1; int32 width = 2; int32 colorspace = 3;
            bytes encoded_image_string = 4; }                     (PNG, colorspace 3 = RGB)

Only process 0 writes (the caller checks `jax.process_index()`).
"""

from __future__ import annotations

import io
import json
import os
import socket
import shutil
import struct
import tempfile
import time

import numpy as np

from jaxcorr.core import files


def _crc32c_table() -> list[int]:
  table = []
  for n in range(256):
    c = n
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    table.append(c)
  return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli), as TFRecord uses."""
  c = 0xFFFFFFFF
  for b in data:
    c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
  return c ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
  c = crc32c(data)
  return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
  out = bytearray()
  n &= (1 << 64) - 1
  while True:
    b = n & 0x7F
    n >>= 7
    if n:
      out.append(b | 0x80)
    else:
      out.append(b)
      return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
  return _varint(number << 3 | wire) + payload


def _bytes_field(number: int, data: bytes) -> bytes:
  return _field(number, 2, _varint(len(data)) + data)


def _png(image) -> bytes:
  """PNG bytes of an RGB uint8 [H, W, 3] array."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  out = io.BytesIO()
  Image.fromarray(np.asarray(image, np.uint8), "RGB").save(out, format="PNG")
  return out.getvalue()


def _image_value(tag: str, image) -> bytes:
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"image summary {tag!r}: expected uint8 [H, W, 3], got {image.dtype} "
                     f"{image.shape}")
  h, w = image.shape[:2]
  encoded = (_field(1, 0, _varint(h)) + _field(2, 0, _varint(w)) + _field(3, 0, _varint(3))
             + _bytes_field(4, _png(image)))
  return _bytes_field(1, tag.encode()) + _bytes_field(4, encoded)


def encode_event(step: int, wall_time: float, scalars: dict | None = None,
                 file_version: str | None = None, images: dict | None = None) -> bytes:
  """One `Event` message with scalar and image summaries (or the file-version header)."""
  msg = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(int(step)))
  if file_version is not None:
    msg += _bytes_field(3, file_version.encode())
  values = [_bytes_field(1, tag.encode()) + _field(2, 5, struct.pack("<f", float(v)))
            for tag, v in (scalars or {}).items()]
  values += [_image_value(tag, image) for tag, image in (images or {}).items()]
  if values:
    msg += _bytes_field(5, b"".join(_bytes_field(1, v) for v in values))
  return msg


def tfrecord(payload: bytes) -> bytes:
  header = struct.pack("<Q", len(payload))
  return (header + struct.pack("<I", _masked_crc(header)) + payload
          + struct.pack("<I", _masked_crc(payload)))


def truncate_jsonl(path: str, last_step: int) -> int:
  """Keeps the rows of a metrics.jsonl up to `last_step` (and drops a torn last line), atomically;
  returns how many rows were dropped. A resumed run then writes each later step once."""
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    lines = f.read().splitlines()
  kept = []
  for line in lines:
    try:
      row = json.loads(line)
    except json.JSONDecodeError:   # a line cut by a kill
      continue
    if int(row.get("step", 0)) <= last_step:
      kept.append(line)
  if len(kept) < len(lines):
    files.atomic_write_text(path, "".join(line + "\n" for line in kept))
  return len(lines) - len(kept)


class MetricWriter:
  """Writes scalars to `<workdir>/metrics.jsonl` and TensorBoard events in `<workdir>/tb/`.

  `resume_step`: the step the run starts from; rows after it (written by an earlier run after
  its last checkpoint) are dropped first, so metrics.jsonl holds one row per step and kind.
  """

  def __init__(self, workdir: str, enabled: bool = True, resume_step: int | None = None):
    self.enabled = enabled
    if not enabled:
      return
    name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
    paths = (os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir, "tb", name))
    # An object store (gs://) cannot append: both files grow in a local folder and are
    # uploaded whole after every write (they are small), `_upload`.
    self._remote = paths if files.is_uri(workdir) else None
    if self._remote:
      self._stage = tempfile.mkdtemp(prefix="jaxcorr_metrics_")
      local = (os.path.join(self._stage, "metrics.jsonl"), os.path.join(self._stage, name))
      if files.path(paths[0]).exists():
        with open(local[0], "wb") as f:
          f.write(files.path(paths[0]).read_bytes())
    else:
      local = paths
    files.path(os.path.dirname(paths[1])).mkdir(parents=True, exist_ok=True)
    if resume_step is not None:
      truncate_jsonl(local[0], resume_step)
    self._jsonl = open(local[0], "a")
    self._events = open(local[1], "ab")
    self._events.write(tfrecord(encode_event(0, time.time(), file_version="brain.Event:2")))

  def _upload(self) -> None:
    if self._remote:
      for f, remote in zip((self._jsonl, self._events), self._remote):
        with open(f.name, "rb") as local:
          files.path(remote).write_bytes(local.read())

  def write(self, step: int, scalars: dict) -> None:
    if not self.enabled:
      return
    clean = {k: float(np.asarray(v)) for k, v in scalars.items()}
    self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **clean}) + "\n")
    self._jsonl.flush()
    self._events.write(tfrecord(encode_event(step, time.time(), clean)))
    self._events.flush()
    self._upload()

  def write_images(self, step: int, images: dict) -> None:
    """TensorBoard image summaries {tag: uint8 [H, W, 3]} (not in metrics.jsonl)."""
    if not self.enabled or not images:
      return
    self._events.write(tfrecord(encode_event(step, time.time(), images=images)))
    self._events.flush()
    self._upload()

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._events.close()
      if self._remote:
        shutil.rmtree(self._stage, ignore_errors=True)
