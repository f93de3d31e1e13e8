"""jaxcorr.pictures.classifier: exact confusion counts, class names in the captions, attention
shown as a multiple of uniform on one colour scale."""

import numpy as np

from jaxcorr.pictures import classifier, style


def test_confusion_counts_and_figure():
  labels = np.array([0, 0, 0, 1, 1])
  probs = np.array([0.1, 0.7, 0.2, 0.9, 0.3])
  np.testing.assert_array_equal(classifier.confusion_counts(labels, probs, 0.5), [[2, 1], [1, 1]])
  np.testing.assert_array_equal(classifier.confusion_counts(labels, probs, 0.25), [[2, 1], [0, 2]])
  fig = np.asarray(classifier.confusion_figure(labels, probs, 0.5))
  assert fig.shape[0] >= 240 and fig.shape[1] >= 240
  # The "no fracture" row: 2 of 3 right -> colour of 2/3; its error cell 1/3.
  for fraction in (2 / 3, 1 / 3, 0.5):
    assert (fig == style.colormap(fraction)).all(-1).sum() > 1000


def test_attention_figure_scale_and_layout():
  views = np.zeros((2, 2, 16, 16), np.float32)
  attention = np.full((2, 2, 4, 4), 1 / 32, np.float32)
  attention[0, 0, 0, 0] = 0.5     # 16 times the others, then normalised: 512/47 x the mean
  attention[0] /= attention[0].sum()
  fig = classifier.attention_figure(views, attention, np.array([1, 0]), np.array([0.2, 0.9]),
                                    0.5, ids=["a", "b"], size=64)
  ratio = attention[0, 0, 0, 0] / attention[0].mean()
  assert abs(ratio - 512 / 47) < 1e-5 and style.nice_ceil(ratio) == 20   # the scale: 0 to 20
  bar = np.asarray(fig)[:, 4 * 64 + 4 * style.GAP:]
  assert (bar == style.colormap(1.0)).all(-1).any()
  # Two rows of [plain, attention] x 2 views at 64 px, a caption line each, and the bar.
  assert fig.height >= 2 * (64 + style.line_height()) and fig.width > 4 * 64
  single = classifier.attention_figure(views, attention[:, :1], np.array([1, 0]),
                                       np.array([0.2, 0.9]), 0.5, size=64)
  assert single.width < fig.width   # view 1 has no attention panel


def test_errors_are_named_and_known_findings_ringed():
  assert classifier.verdict(1, 0) == "missed fracture"
  assert classifier.verdict(0, 1) == "false fracture" and classifier.verdict(1, 1) == "correct"
  views = np.zeros((1, 2, 16, 16), np.float32)
  attention = np.full((1, 2, 4, 4), 1 / 32, np.float32)
  points = np.array([[[8.0, 8.0], [np.nan, np.nan]]])
  args = (views, attention, np.array([1]), np.array([0.2]), 0.5)
  ringed = np.asarray(classifier.attention_figure(*args, points=points))
  plain = np.asarray(classifier.attention_figure(*args))
  assert ringed.shape == plain.shape and ringed.shape[0] >= 256   # panels of 256 px
  red = lambda a: ((a[..., 0] == 255) & (a[..., 1] == 60) & (a[..., 2] == 60)).sum()
  assert red(plain) == 0 and red(ringed) > 100
  # The ring of view 1 is drawn on its plain and its attention panel, none on view 2.
  half = ringed.shape[1] // 2
  assert red(ringed[:, :half]) > 0 and red(ringed[:, half:]) == 0
