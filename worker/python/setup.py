"""pip install worker/python: the smlt package, built offline from this tree.

The _smlt extension links the shared libsmlt of the project's build (the README's build makes
it: build/lib/libsmlt.so; another build directory: SMLT_BUILD_DIR=DIR). A copy of the library
goes into the package and the extension finds it there ($ORIGIN), so the installed package
does not depend on the build tree staying where it is.
"""
import os
import shutil

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD = os.path.abspath(os.environ.get("SMLT_BUILD_DIR", os.path.join(ROOT, "build")))
LIBDIR = os.path.join(BUILD, "lib")
SONAME = "libsmlt.so.0"


class BuildWithLib(build_ext):
    """Checks that libsmlt is built, and ships it next to the extension."""

    def run(self):
        if not os.path.exists(os.path.join(LIBDIR, SONAME)):
            raise SystemExit("smlt: %s not found: build the project first (README: Build), or "
                             "set SMLT_BUILD_DIR to its build directory" % os.path.join(LIBDIR, SONAME))
        super().run()
        dest = os.path.join(self.build_lib, "smlt")
        os.makedirs(dest, exist_ok=True)
        shutil.copy2(os.path.join(LIBDIR, SONAME), os.path.join(dest, SONAME))


setup(
    name="smlt",
    version="0.1.0",
    description="SMLT-C's parameter-server client for Python and PyTorch",
    packages=["smlt"],
    ext_modules=[Extension(
        "smlt._smlt", ["smlt/_smlt.c"],
        include_dirs=[os.path.join(ROOT, "worker", "include"), os.path.join(ROOT, "proto")],
        library_dirs=[LIBDIR],
        libraries=["smlt"],
        runtime_library_dirs=["$ORIGIN"],
    )],
    cmdclass={"build_ext": BuildWithLib},
    python_requires=">=3.9",
)
