"""The build hook of the logstar package (the metadata is in pyproject.toml):
``build_py`` also generates logstar/v1/, the messages and gRPC stubs, from
proto/logstar/v1/*.proto into the build directory, so that the wheel ships
them and the source tree stays without generated code (build_stubs.py says
which tools it uses and what it says when they are missing)."""
import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build_stubs  # noqa: E402


class BuildPyWithStubs(build_py):
    def run(self):
        super().run()
        here = os.path.dirname(os.path.abspath(__file__))
        try:
            build_stubs.generate(build_stubs.find_proto_dir(here), self.build_lib)
        except build_stubs.MissingTools as e:
            sys.exit(str(e))


setup(cmdclass={"build_py": BuildPyWithStubs})
