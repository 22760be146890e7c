"""ctypes binding of include/fattn.h, with no dependency beyond the standard library.

The PyTorch op, the benchmarks and the tool tests all reach libfattn through this module, so the
struct layouts below must mirror fattn.h exactly (test_package.py checks them against the
library's own fattn_params_bshd).
"""
import ctypes
import ctypes.util
import os

OK = 0
ERR_INVALID_ARGUMENT = 1
ERR_UNSUPPORTED = 2
ERR_CUDA = 3
ERR_OUT_OF_MEMORY = 4
ERR_WORKSPACE = 5

DTYPE_F32 = 0
DTYPE_F16 = 1
DTYPE_BF16 = 2

MODE_NATIVE = 0
MODE_FP8 = 1


class Tensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("stride_batch", ctypes.c_int64),
        ("stride_seq", ctypes.c_int64),
        ("stride_head", ctypes.c_int64),
    ]


class Params(ctypes.Structure):
    _fields_ = [
        ("batch", ctypes.c_int64),
        ("seqlen_q", ctypes.c_int64),
        ("seqlen_kv", ctypes.c_int64),
        ("heads_q", ctypes.c_int64),
        ("heads_kv", ctypes.c_int64),
        ("head_dim", ctypes.c_int64),
        ("dtype", ctypes.c_int),
        ("mode", ctypes.c_int),
        ("causal", ctypes.c_int),
        ("scale", ctypes.c_float),
        ("q", Tensor),
        ("k", Tensor),
        ("v", Tensor),
        ("o", Tensor),
        ("lse", ctypes.c_void_p),
    ]


class FattnError(RuntimeError):
    """A libfattn call failed; `status` is the code, the message is libfattn's own."""

    def __init__(self, status, name, message):
        super().__init__(f"{name}: {message}")
        self.status = status


class LibraryNotFound(OSError):
    """No candidate path held a loadable libfattn; the message lists each one and why."""


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO_ROOT = os.path.dirname(os.path.dirname(_PACKAGE_DIR))


def _candidates(path):
    """(path, how it was chosen) in the order load_library tries them."""
    # An explicit choice is final: falling through to a build folder would quietly run a library
    # other than the one asked for.
    if path:
        yield path, "argument"
        return
    if os.environ.get("FATTN_LIBRARY"):
        yield os.environ["FATTN_LIBRARY"], "FATTN_LIBRARY"
        return
    # What pip install ./python built and shipped inside the package.
    yield os.path.join(_PACKAGE_DIR, "lib", "libfattn.so"), "package"
    # For PYTHONPATH=python in a checkout: the unsanitized build folders the README's commands
    # make (an ASan build cannot be loaded into an uninstrumented Python). Newest first, so a
    # fresh build wins over a stale one.
    built = [os.path.join(_REPO_ROOT, folder, "src", "libfattn.so")
             for folder in ("build", os.path.join("build-test", "release"))]
    built = [lib for lib in built if os.path.exists(lib)]
    for lib in sorted(built, key=os.path.getmtime, reverse=True):
        yield lib, "build folder"
    found = ctypes.util.find_library("fattn")
    if found:
        yield found, "system library path"


_lib = None
_found_by = None


def load_library(path=None):
    """Loads libfattn once: `path` or else $FATTN_LIBRARY when given (and then nothing else), otherwise
    the package's lib/, the repo's build folders, then the system's library path. Raises
    LibraryNotFound listing every place tried."""
    global _lib, _found_by
    if _lib is not None and path is None:
        return _lib
    tried = []
    for candidate, how in _candidates(path):
        try:
            lib = ctypes.CDLL(candidate)
        except OSError as err:
            tried.append(f"{candidate} ({err})")
            continue
        _declare(lib)
        if path is None:
            _lib, _found_by = lib, how
        return lib
    raise LibraryNotFound(
        "libfattn not found; install the package (pip install ./python builds it), build it "
        "(cmake -B build && cmake --build build) or set FATTN_LIBRARY. "
        "Tried: " + ("; ".join(tried) if tried else "no candidate paths")
    )


def info():
    """What this process runs: {"version", "library" (its path), "found_by" (FATTN_LIBRARY,
    package, build folder or system library path), "cuda" (True when the library was built with
    its CUDA kernels; whether a GPU is present is torch.cuda's question)}. Loads libfattn."""
    lib = load_library()
    probe = make_params(batch=1, seqlen_q=1, seqlen_kv=1, heads_q=1, heads_kv=1, head_dim=64,
                        dtype=DTYPE_F16, q=Tensor(), k=Tensor(), v=Tensor(), o=Tensor())
    size = ctypes.c_size_t(0)
    # A build without nvcc answers the workspace query with UNSUPPORTED; a CUDA build sizes it.
    cuda = lib.fattn_cuda_workspace_size(ctypes.byref(probe), ctypes.byref(size)) == OK
    return {"version": version(), "library": os.path.realpath(lib._name), "found_by": _found_by,
            "cuda": cuda}


def _declare(lib):
    P = ctypes.POINTER(Params)
    lib.fattn_status_name.restype = ctypes.c_char_p
    lib.fattn_status_name.argtypes = [ctypes.c_int]
    lib.fattn_last_error.restype = ctypes.c_char_p
    lib.fattn_last_error.argtypes = []
    lib.fattn_version_string.restype = ctypes.c_char_p
    lib.fattn_version_string.argtypes = []
    lib.fattn_validate.restype = ctypes.c_int
    lib.fattn_validate.argtypes = [P]
    lib.fattn_cpu_forward.restype = ctypes.c_int
    lib.fattn_cpu_forward.argtypes = [P, ctypes.c_int]
    lib.fattn_cuda_workspace_size.restype = ctypes.c_int
    lib.fattn_cuda_workspace_size.argtypes = [P, ctypes.POINTER(ctypes.c_size_t)]
    lib.fattn_cuda_supported.restype = ctypes.c_int
    lib.fattn_cuda_supported.argtypes = [P]
    lib.fattn_cuda_forward.restype = ctypes.c_int
    lib.fattn_cuda_forward.argtypes = [P, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def status_name(status):
    return load_library().fattn_status_name(status).decode()


def last_error():
    return load_library().fattn_last_error().decode()


def version():
    return load_library().fattn_version_string().decode()


def _check(status):
    if status != OK:
        raise FattnError(status, status_name(status), last_error())


def tensor(data_ptr, stride_batch, stride_seq, stride_head):
    """A fattn_tensor view: an address and element strides (head dim contiguous)."""
    return Tensor(data_ptr, stride_batch, stride_seq, stride_head)


def make_params(*, batch, seqlen_q, seqlen_kv, heads_q, heads_kv, head_dim, dtype, q, k, v, o,
                mode=MODE_NATIVE, causal=False, scale=0.0, lse=None):
    """Params from keyword fields; q/k/v/o are Tensor views, lse an address or None."""
    return Params(batch, seqlen_q, seqlen_kv, heads_q, heads_kv, head_dim, dtype, mode,
                  1 if causal else 0, scale, q, k, v, o, lse)


def validate(params):
    """Returns the status (no exception): tests look at codes and messages."""
    return load_library().fattn_validate(ctypes.byref(params))


def cpu_forward(params, num_threads=0):
    _check(load_library().fattn_cpu_forward(ctypes.byref(params), num_threads))


def cuda_supported(params):
    """(status, message): OK, or why the CUDA path will not take these parameters."""
    lib = load_library()
    status = lib.fattn_cuda_supported(ctypes.byref(params))
    return status, ("" if status == OK else last_error())


def cuda_workspace_size(params, lib=None):
    """The workspace bytes, as `lib` (default: the loaded libfattn) sizes them; its own message on failure."""
    lib = lib or load_library()
    size = ctypes.c_size_t(0)
    status = lib.fattn_cuda_workspace_size(ctypes.byref(params), ctypes.byref(size))
    if status != OK:
        raise FattnError(status, status_name(status), lib.fattn_last_error().decode())
    return size.value


def cuda_forward(params, workspace=None, workspace_bytes=0, stream=None):
    """Enqueues on `stream` (a cudaStream_t as an int, None for the default stream)."""
    _check(load_library().fattn_cuda_forward(ctypes.byref(params), workspace, workspace_bytes,
                                             stream))
