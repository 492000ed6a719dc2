"""tsn: Temporal Segment Networks on PaddlePaddle — prepare, train, evaluate, export and predict.

The Python API (`tsn_cli.api`) is available here too, imported on first use so that `import tsn_cli` and
`tsn --help` stay fast: `tsn_cli.load_config`, `train`, `evaluate`, `export`, `Predictor`, `prepare_demo`.
"""

__version__ = "0.1.0"

_API = ("load_config", "train", "evaluate", "export", "Predictor", "Prediction", "prepare_demo", "DemoData")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    """Import `tsn_cli.api` when one of its names is first used (PEP 562)."""
    if name in _API:
        from tsn_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'tsn_cli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
