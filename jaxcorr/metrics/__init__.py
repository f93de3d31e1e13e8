"""Metrics on host arrays: `correspondence` (MSE, precision, recall, AP at C > 0.2, as the
paper's Tables 1-2) and `classification` (accuracy, kappa, AUROC, Table 3)."""
