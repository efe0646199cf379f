"""Run :mod:`inference.training.device_run` where only torch, numpy and onnx are installed.

``python inference/training/on_device.py train ...`` on the lent GPU machine. The ``inference``
package's ``__init__`` is the runtime API (pydicom, the Triton client, scipy...), absent there;
the training modules need none of it, so the package is registered without running it.
"""

import runpy
import sys
import types
from pathlib import Path

if __name__ == "__main__":
    root = Path(__file__).resolve().parents[2]
    package = types.ModuleType("inference")
    package.__path__ = [str(root / "inference")]
    sys.modules["inference"] = package
    sys.path.insert(0, str(root))
    runpy.run_module("inference.training.device_run", run_name="__main__", alter_sys=True)
