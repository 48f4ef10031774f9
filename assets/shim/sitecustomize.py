"""Loaded by Python at start-up because poolscope put this folder first on PYTHONPATH:
starts poolscope's watch (poolscope_shim), then runs the sitecustomize the program
would have loaded without poolscope, if there is one."""

import os
import sys

try:
    import poolscope_shim

    poolscope_shim.install()
except Exception as e:  # the program must run even if watching cannot
    sys.stderr.write("poolscope: cannot watch this program: %s\n" % e)


def _chain():
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        if os.path.abspath(entry or ".") == here:
            continue
        spec = importlib.machinery.PathFinder.find_spec("sitecustomize", [entry or "."])
        if spec is not None and spec.origin and os.path.dirname(os.path.abspath(spec.origin)) != here:
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return


_chain()
