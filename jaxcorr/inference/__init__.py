"""Prediction on a user's radiographs: the `Predictor`, test-time augmentation and export."""
