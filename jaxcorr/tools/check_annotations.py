"""Checks a sparse point-pair annotation file (docs/annotations.md) and prints the report.

  python -m jaxcorr.tools.check_annotations FILE [--no-images]

Prints one line per problem as `FILE:LINE: error|warning [kind] message` (malformed lines,
missing or unreadable images, points off their image, pairs within one view, duplicate and
contradictory pairs, repeated study names, studies without pairs), then positives / negatives
per study. `--no-images` checks the file alone, without opening the images. Exit status: 1
when there is any error, 0 otherwise (warnings allowed).
"""

from __future__ import annotations

import argparse
import sys

from jaxcorr.xray import annotations


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m jaxcorr.tools.check_annotations",
      description="Check a JSON-lines point-pair annotation file (see docs/annotations.md).")
  parser.add_argument("file", help="the .jsonl annotation file")
  parser.add_argument("--no-images", action="store_true",
                      help="do not open the images (no missing-file or out-of-image checks)")
  args = parser.parse_args(argv)
  report = annotations.validate(args.file, check_images=not args.no_images)
  print(report.format())
  return 0 if report.ok else 1


if __name__ == "__main__":
  sys.exit(main())
