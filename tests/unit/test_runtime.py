"""The suite runs on the Python minor Lambda runs, so what passes here is what deploys.

template.yaml's Runtime decides; the Makefile picks a matching interpreter
(PATH or pyenv's versions) for the venv, and fails under CI=true without one.
Bytecode is Python-minor specific: nexus/package.py compiles every package's
with an interpreter of this version (tests/lambda_runtime/ checks the pycs).
"""

from __future__ import annotations

import sys

from nexus import package
from tests import iam


def test_the_suite_runs_on_the_deployed_python_minor():
    deployed = iam.runtime()
    assert deployed == f"python{package.PYTHON_VERSION}"
    running = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    # A different minor would test code under rules (and bytecode) Lambda does not use.
    assert running == deployed, (f"the suite runs on {running} but template.yaml deploys {deployed}: "
                                 f"`make clean install` with {deployed} on PATH or in ~/.pyenv/versions")


def test_the_layer_declares_the_same_runtime():
    layer = iam.template()["Resources"]["SharedLibraryLayer"]["Properties"]
    assert layer["CompatibleRuntimes"] == [iam.runtime()]
