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
