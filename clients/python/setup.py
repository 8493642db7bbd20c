"""The build hooks of the logstar package (the metadata is in pyproject.toml):
``build_py`` also generates logstar/v1/, the messages and gRPC stubs, from
proto/logstar/v1/*.proto into the build directory, so that the wheel ships
them and the source tree stays without generated code (build_stubs.py says
which tools it uses and what it says when they are missing); ``sdist`` puts
proto/ into the source archive, so that it builds away from the repository."""
import os
import shutil
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

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


class SdistWithProtos(sdist):
    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        here = os.path.dirname(os.path.abspath(__file__))
        shutil.copytree(os.path.join(build_stubs.find_proto_dir(here), "logstar"),
                        os.path.join(base_dir, "proto", "logstar"))


setup(packages=["logstar"], cmdclass={"build_py": BuildPyWithStubs, "sdist": SdistWithProtos})
