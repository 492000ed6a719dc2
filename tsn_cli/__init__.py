"""tsn: Temporal Segment Networks on PaddlePaddle — prepare, train, evaluate, export and predict."""

__version__ = "0.1.0"
