"""The libraries' warnings about their own internals are filtered at start; ours still show."""

import importlib.util
import subprocess
import sys


def test_megatron_import_warnings_filtered_ours_kept():
    code = (
        "import warnings\n"
        "from sweet_megatron.training.metrics import filter_library_warnings\n"
        "filter_library_warnings()\n"
        "import megatron.core.optimizer, megatron.core.models.gpt.gpt_layer_specs\n"
        "warnings.warn('a warning of our own')\n"
    )
    proc = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "a warning of our own" in proc.stderr
    assert "not installed" not in proc.stderr, proc.stderr
    # and without the filter the same import does warn (the test would notice a library that stopped)
    plain = subprocess.run([sys.executable, "-W", "default", "-c", code.replace("filter_library_warnings()\n", "")],
                           capture_output=True, text=True, timeout=120)
    assert "Apex" in plain.stderr or importlib.util.find_spec("apex") is not None
