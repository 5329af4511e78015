"""jupyter-autoresearch: let a language model run experiments on your notebook."""

from ._metrics import metric

__version__ = "0.1.0"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-autoresearch"}]
