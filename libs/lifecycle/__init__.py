"""What the trainer, the evaluator and the monitor share about models and their data.

- :mod:`libs.lifecycle.frames`: the training-set frame contract (columns, label
  encoding, feature matrix) and the time windows (training vs holdout).
- :mod:`libs.lifecycle.metrics`: quality metrics (AUC, accuracy, macro F1, MAE, RMSE),
  calibration error and demographic parity difference, as pure numpy functions.
- :mod:`libs.lifecycle.artifact`: loading a TorchScript model artifact and scoring a frame.
- :mod:`libs.lifecycle.data`: the ``TrainingData`` port and its feature-store gRPC adapter
  (``StreamTrainingSet``).
- :mod:`libs.lifecycle.wire`: a training set on the wire (Arrow IPC batches out of the
  feature store's parquet, the frame rebuilt and checked on arrival) and its content hash.
- :mod:`libs.lifecycle.registry`: the ``ModelRegistry`` port (runs, versions, artifacts,
  aliases, evaluation reports) and its registry gRPC adapter.
"""
