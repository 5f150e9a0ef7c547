"""Build script for hanami_torch and its C++ extension ``hanami_torch._C``.

The metadata lives in ``pyproject.toml``; this file only adds what needs Python: the version
(read from ``hanami_torch/_version.py``) and the compiled extension.

Environment switches (read at build time):

``HANAMI_CUDA=1``
    Build a ``CUDAExtension`` that adds ``csrc/cuda/*.cu`` and ``csrc/cuda/*.cpp`` and defines
    ``HANAMI_WITH_CUDA``.
    Needs nvcc; set ``CUDA_HOME`` (for example ``/usr/local/cuda``).  ``TORCH_CUDA_ARCH_LIST``
    defaults to ``"8.0;9.0"``.  Without it the build is CPU-only and never calls nvcc.
``HANAMI_NATIVE=1``
    Add ``-march=native``: only for a build that runs on the machine that compiled it.

Install with ``pip install --no-build-isolation -e .`` (torch must already be installed: the
extension is compiled against it).  ``python setup.py build_ext --inplace`` rebuilds the
extension incrementally afterwards.
"""

from __future__ import annotations

import os
import re
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"


def read_version() -> str:
    text = (ROOT / "hanami_torch" / "_version.py").read_text()
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if match is None:
        raise RuntimeError("hanami_torch/_version.py must contain a line: __version__ = \"X.Y.Z\"")
    return match.group(1)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def relative_glob(pattern: str) -> list[str]:
    # setuptools wants source paths relative to setup.py; sorted so the build is reproducible.
    return sorted(os.path.relpath(path, ROOT) for path in glob(str(CSRC / pattern), recursive=True))


def extension_and_build_dir():
    use_cuda = env_flag("HANAMI_CUDA")
    native = env_flag("HANAMI_NATIVE")

    sources = relative_glob("*.cpp") + relative_glob("cpu/*.cpp")
    if use_cuda:
        # kernels (*.cu, nvcc) and their host side (*.cpp, the C++ compiler)
        sources += relative_glob("cuda/*.cu") + relative_glob("cuda/*.cpp")
    if not sources:
        raise RuntimeError(
            f"No C++ sources found under {CSRC} (expected csrc/*.cpp and csrc/cpu/*.cpp). "
            "Check that the checkout is complete."
        )
    # With ninja (the default) every build runs ninja, which tracks headers itself; these only
    # matter for torch's fallback builder when ninja is missing.
    depends = relative_glob("**/*.h") + relative_glob("**/*.cuh") + ["setup.py"]

    # -ffp-contract=off: no fused multiply-add, so the kernels round exactly like the Python
    # reference implementation and the tests can compare bit for bit.
    # C++20: torch 2.14's headers refuse anything older.
    # -fopenmp: at::parallel_for (batched inference, the value codes) is an OpenMP loop written in
    # torch's headers; compiled without it, the pragma is ignored and the loop runs on one thread.
    # Not in the ThreadSanitizer build of the race check (tests/race_check.sh): libgomp is not
    # instrumented, so its barriers look like races there; that build keeps those loops serial.
    openmp = "-fsanitize=thread" not in os.environ.get("CFLAGS", "")
    cxx_flags = ["-O3", "-std=c++20", "-ffp-contract=off"] + (["-fopenmp"] if openmp else [])
    if native:
        cxx_flags.append("-march=native")

    kwargs = dict(
        name="hanami_torch._C",
        sources=sources,
        depends=depends,
        include_dirs=[str(CSRC)],
        extra_link_args=["-fopenmp"] if openmp else [],  # libgomp, the OpenMP runtime torch itself uses
    )
    if use_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        # --fmad=false is nvcc's -ffp-contract=off: the CUDA kernels must round like the CPU ones.
        nvcc_flags = ["-O3", "-std=c++20", "--fmad=false", "-Xcompiler", "-ffp-contract=off"]
        extension = CUDAExtension(
            define_macros=[("HANAMI_WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
            **kwargs,
        )
    else:
        extension = CppExtension(extra_compile_args={"cxx": cxx_flags}, **kwargs)

    flavour = ("cuda" if use_cuda else "cpu") + ("-native" if native else "")
    return extension, ROOT / "build" / flavour


extension, build_dir = extension_and_build_dir()


class BuildExtensionInBuildDir(BuildExtension):
    """BuildExtension that keeps its objects and library in ``build/<flavour>/``.

    ninja finds its previous objects there, so a rebuild only compiles what changed, also under
    ``pip install -e .`` (which would otherwise build in a fresh temporary folder every time), and
    a CUDA build never mixes its objects with the CPU build.  ``--build-temp`` and ``--build-lib``
    on the command line still win.
    """

    def initialize_options(self) -> None:
        super().initialize_options()
        self.build_temp = str(build_dir / "temp")
        self.build_lib = str(build_dir / "lib")


setup(
    version=read_version(),
    packages=find_packages(include=["hanami_torch", "hanami_torch.*"]),
    ext_modules=[extension],
    cmdclass={"build_ext": BuildExtensionInBuildDir},
)
