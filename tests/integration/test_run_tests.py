"""contrib/run-tests.sh, the README's test command, on a stand-in project: a
copy of the script beside a do-nothing install-deps.sh and a CMakeLists.txt
with an FDH_TESTS option and one test, built with the real cmake and ctest.

Run by ctest (FDH_CMAKE comes from its environment), or by hand:
    python3 tests/integration/test_run_tests.py
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("FDH_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
CMAKE = os.environ.get("FDH_CMAKE") or shutil.which("cmake")

CMAKELISTS = r"""
cmake_minimum_required(VERSION 3.18)
project(standin NONE)
option(FDH_TESTS "Build the test suite" ON)
if(FDH_TESTS)
  enable_testing()
  add_test(NAME standin/ran COMMAND ${CMAKE_COMMAND} -E echo "the stand-in test ran")
endif()
"""


@unittest.skipUnless(CMAKE, "cmake is missing")
class RunTestsTests(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="fdh-run-tests-")
        self.addCleanup(tmp.cleanup)
        self.root = tmp.name
        contrib = os.path.join(self.root, "contrib")
        os.mkdir(contrib)
        shutil.copy(os.path.join(SOURCE_DIR, "contrib", "run-tests.sh"), contrib)
        with open(os.path.join(contrib, "install-deps.sh"), "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(os.path.join(contrib, "install-deps.sh"), 0o755)
        with open(os.path.join(self.root, "CMakeLists.txt"), "w") as f:
            f.write(CMAKELISTS)
        # The cmake of the build that runs us, and its ctest, first on PATH.
        bindir = os.path.dirname(os.path.realpath(CMAKE))
        self.env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))

    def run_tests(self, *args):
        p = subprocess.run([os.path.join(self.root, "contrib", "run-tests.sh"), *args],
                           cwd=self.root, env=self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        return p.returncode, p.stdout.decode(errors="replace")

    def test_runs_the_tests_of_a_build_configured_without_them(self):
        # docs/getting-started.md configures ./build with -DFDH_TESTS=OFF.
        subprocess.run([CMAKE, "-S", self.root, "-B", os.path.join(self.root, "build"),
                        "-DFDH_TESTS=OFF"], env=self.env, stdout=subprocess.DEVNULL,
                       check=True, timeout=120)
        rc, out = self.run_tests()
        self.assertEqual(rc, 0, out)
        self.assertIn("100% tests passed, 0 tests failed out of 1", out)

    def test_no_test_run_is_a_failure(self):
        rc, out = self.run_tests("-R", "^no-such-test$")
        self.assertNotEqual(rc, 0, out)
        self.assertIn("No tests were found", out)


if __name__ == "__main__":
    unittest.main()
