"""The metric writers: CRC32C test vector, event framing, JSON lines."""

import json
import struct

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
