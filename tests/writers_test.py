"""The metric writers: CRC32C test vector, event framing, JSON lines."""

import json
import struct

import pytest

from jaxcorr.train import writers


def _read_records(path):
  data = path.read_bytes()
  out, pos = [], 0
  while pos < len(data):
    (length,) = struct.unpack("<Q", data[pos:pos + 8])
    assert struct.unpack("<I", data[pos + 8:pos + 12])[0] == writers._masked_crc(data[pos:pos + 8])
    payload = data[pos + 12:pos + 12 + length]
    assert struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])[0] == \
        writers._masked_crc(payload)
    out.append(payload)
    pos += 16 + length
  return out


def test_crc32c_standard_check_value():
  assert writers.crc32c(b"123456789") == 0xE3069283


def test_event_files_and_jsonl(tmp_path):
  w = writers.MetricWriter(str(tmp_path))
  w.write(3, {"loss": 0.5, "ap": 0.25})
  w.close()
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert lines[0]["step"] == 3 and lines[0]["loss"] == 0.5
  (events,) = list((tmp_path / "tb").iterdir())
  records = _read_records(events)
  assert len(records) == 2 and b"brain.Event:2" in records[0]
  # Step 3 as varint after tag (2 << 3 | 0) = 0x10; the tags and the float 0.5 are in there.
  assert b"\x10\x03" in records[1] and b"loss" in records[1] and struct.pack("<f", 0.5) in records[1]


def test_a_resumed_run_drops_the_rows_after_its_checkpoint(tmp_path):
  """A run killed after logging steps 3-4 but checkpointed at 2: the resumed run's writer drops
  those rows (and a line cut by the kill), so each step has one row of each kind."""
  w = writers.MetricWriter(str(tmp_path))
  for step in (1, 2, 3, 4):
    w.write(step, {"train/loss": step / 10})
  w.write(2, {"eval/ap": 0.5})
  w.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 5, "train/lo')
  w = writers.MetricWriter(str(tmp_path), resume_step=2)
  for step in (3, 4):
    w.write(step, {"train/loss": step / 100})
  w.close()
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [(r["step"], sorted(k for k in r if k not in ("step", "time"))) for r in rows] == [
      (1, ["train/loss"]), (2, ["train/loss"]), (2, ["eval/ap"]), (3, ["train/loss"]),
      (4, ["train/loss"])]
  assert [r["train/loss"] for r in rows if "train/loss" in r] == [0.1, 0.2, 0.03, 0.04]
  assert writers.truncate_jsonl(str(tmp_path / "metrics.jsonl"), 4) == 0


def _fields(msg: bytes) -> list:
  """(field number, value) of a protocol buffer message: ints for varints and fixed64/32 as
  bytes, bytes for length-delimited fields (a reader independent of the writer's encoder)."""
  out, pos = [], 0

  def varint():
    nonlocal pos
    n, shift = 0, 0
    while True:
      b = msg[pos]
      pos += 1
      n |= (b & 0x7F) << shift
      shift += 7
      if not b & 0x80:
        return n

  while pos < len(msg):
    key = varint()
    number, wire = key >> 3, key & 7
    if wire == 0:
      out.append((number, varint()))
    elif wire == 1:
      out.append((number, msg[pos:pos + 8]))
      pos += 8
    elif wire == 5:
      out.append((number, msg[pos:pos + 4]))
      pos += 4
    else:
      length = varint()
      out.append((number, msg[pos:pos + length]))
      pos += length
  return out


def test_image_summaries_read_back(tmp_path):
  import io
  import numpy as np
  from PIL import Image
  rng = np.random.default_rng(0)
  picture = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
  w = writers.MetricWriter(str(tmp_path))
  w.write_images(12, {"eval/views": picture})
  w.close()
  (events,) = list((tmp_path / "tb").iterdir())
  _, record = _read_records(events)
  event = dict(_fields(record))
  assert event[2] == 12                                      # step
  (value,) = [v for n, v in _fields(event[5]) if n == 1]    # Summary.value
  value = dict(_fields(value))
  assert value[1] == b"eval/views"
  image = dict(_fields(value[4]))                          # Summary.Value.image
  assert (image[1], image[2], image[3]) == (5, 7, 3)       # height, width, RGB
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(image[4]))), picture)
  with pytest.raises(ValueError, match="expected uint8"):
    writers.encode_event(0, 0.0, images={"x": picture.astype(np.float32)})
