"""Pictures a person looks at: `viz` (PNG of DRRs and correspondences), `match_figure`
(predict.png), `viewer` (the self-contained interactive viewer.html)."""
