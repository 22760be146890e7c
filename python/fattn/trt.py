"""TensorRT engines with fattn's plugin CustomAttnPlugin: build them from ONNX, run them from PyTorch.

    from fattn import trt as ftrt
    plan = ftrt.build_engine("model.onnx", [{"x": ((1, 15000, 4096), (1, 15708, 4096),
                                                    (1, 16500, 4096))}], output="model.plan")
    engine = ftrt.Engine("model.plan")
    y = engine(x=x)["y"]          # on torch's current stream; outputs viewed at x's shapes

Either TensorRT Python module serves: NVIDIA TensorRT's ``tensorrt`` or TensorRT-RTX's
``tensorrt_rtx_bindings`` (which builds engines on a machine without a GPU); the first that imports,
or the one named by ``module=``. Networks are strongly typed (the ONNX model's types are the
engine's). The plugin library is ``plugin_library``, else $FATTN_TRT_PLUGIN, else the package's
``lib/`` folder, else the repository's build folders.

Command line (names as trtexec's):

    python -m fattn.trt build model.onnx --shapes x:1x15000x4096,1x15708x4096,1x16500x4096 -o model.plan
    python -m fattn.trt run model.plan [--shapes x:1x15708x4096] [--iterations 20]
"""
import argparse
import ctypes
import importlib
import logging
import os
import sys
import time

LOG = logging.getLogger("fattn.trt")

MODULES = ("tensorrt", "tensorrt_rtx_bindings")
# What to install for each module, for the error that none imports.
PACKAGES = {
    "tensorrt": "NVIDIA TensorRT's `tensorrt` (pip install tensorrt, or TensorRT's own wheel)",
    "tensorrt_rtx_bindings": "TensorRT-RTX's `tensorrt-rtx-cu13-bindings` and "
                             "`tensorrt-rtx-cu13-libs` (scripts/deps/trt-rtx.sh installs them)",
}
PLUGIN_LIBRARY = "libfattn_trt_plugin.so"

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO_ROOT = os.path.dirname(os.path.dirname(_PACKAGE_DIR))


class TensorRTNotFound(ImportError):
    """No TensorRT Python module could be imported (or the named one could not)."""


class PluginLibraryNotFound(FileNotFoundError):
    """libfattn_trt_plugin.so was not found, or TensorRT's registry did not load it."""


class EngineError(RuntimeError):
    """TensorRT failed to parse, build, deserialise or run; the message carries TensorRT's errors."""


class EngineNotForThisGPU(EngineError):
    """TensorRT refused to deserialise the engine on this GPU (built for other GPUs, or no
    runtime of this TensorRT supports this one); the message is TensorRT's."""


def import_tensorrt(module=None):
    """The TensorRT module: `module` when named (one of MODULES), else the first of MODULES that
    imports. Raises TensorRTNotFound naming what to install."""
    names = (module,) if module else MODULES
    if module and module not in MODULES:
        raise TensorRTNotFound(f"module {module!r} is not a TensorRT module fattn.trt knows; "
                               f"use one of {', '.join(MODULES)}")
    reasons = []
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError as err:
            reasons.append(f"{name}: {err}")
    wanted = " or ".join(PACKAGES[n] for n in names)
    raise TensorRTNotFound(f"no TensorRT Python module imports ({'; '.join(reasons)}); install "
                           f"{wanted}")


def is_rtx(trt):
    return trt.__name__.split(".")[0] == "tensorrt_rtx_bindings"


def find_plugin_library(path=None):
    """The plugin library's path: `path` or $FATTN_TRT_PLUGIN when given (and then nothing else),
    else the package's lib/, then the repository's build folders (newest first)."""
    if path or os.environ.get("FATTN_TRT_PLUGIN"):
        chosen = path or os.environ["FATTN_TRT_PLUGIN"]
        how = "plugin_library" if path else "FATTN_TRT_PLUGIN"
        if not os.path.isfile(chosen):
            raise PluginLibraryNotFound(f"{how} ({chosen}) is not a file")
        return os.path.abspath(chosen)
    candidates = [os.path.join(_PACKAGE_DIR, "lib", PLUGIN_LIBRARY)]
    built = [os.path.join(_REPO_ROOT, folder, "plugin", PLUGIN_LIBRARY)
             for folder in ("build", os.path.join("build-test", "release"))]
    candidates += sorted((b for b in built if os.path.exists(b)), key=os.path.getmtime,
                         reverse=True)
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise PluginLibraryNotFound(
        f"{PLUGIN_LIBRARY} not found (looked in {', '.join(candidates)}); build it with "
        "cmake -DTENSORRT_ROOT=<TensorRT headers> (docs/plugin.md), then pass plugin_library= or "
        "set FATTN_TRT_PLUGIN")


class _Logger:
    """A TensorRT logger into Python's logging that also keeps the errors, for exceptions."""

    def __init__(self, trt):
        self.errors = []
        severity = trt.Logger.Severity
        levels = {severity.INTERNAL_ERROR: logging.CRITICAL, severity.ERROR: logging.ERROR,
                  severity.WARNING: logging.WARNING, severity.INFO: logging.DEBUG,
                  severity.VERBOSE: logging.DEBUG}
        outer = self

        class Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)

            def log(self, sev, msg):
                level = levels.get(sev, logging.INFO)
                if level >= logging.ERROR:
                    outer.errors.append(msg)
                LOG.log(level, "TensorRT: %s", msg)

        self.trt_logger = Logger()

    def take(self):
        text, self.errors = "; ".join(self.errors), []
        return text


# One logger per module for the process: TensorRT keeps the first logger a builder or runtime
# was made with, and registers the plugin library against that registry.
_loggers = {}
_loaded_plugins = {}


def _logger(trt):
    if trt.__name__ not in _loggers:
        _loggers[trt.__name__] = _Logger(trt)
    return _loggers[trt.__name__]


def load_plugin(trt, plugin_library=None):
    """Loads the plugin library into `trt`'s plugin registry once; returns its path."""
    path = find_plugin_library(plugin_library)
    key = (trt.__name__, path)
    if key not in _loaded_plugins:
        log = _logger(trt)
        if not trt.get_plugin_registry().load_library(path):
            raise PluginLibraryNotFound(f"TensorRT's plugin registry did not load {path}: "
                                        f"{log.take() or 'no reason given'}")
        _loaded_plugins[key] = True
        LOG.info("plugin library %s loaded into %s", path, trt.__name__)
    return path


def _check_rtx_parser(trt):
    """TensorRT-RTX's ONNX parser dlopens the unversioned libtensorrt_rtx.so, which its wheel does
    not ship, and aborts the process when that fails; find it first and say how to fix it."""
    libs = importlib.import_module("tensorrt_rtx_libs")
    beside = os.path.join(os.path.dirname(os.path.abspath(libs.__file__)), "libtensorrt_rtx.so")
    if os.path.exists(beside):
        return
    try:
        ctypes.CDLL("libtensorrt_rtx.so")
    except OSError as err:
        link = os.path.join(_REPO_ROOT, ".stage", "tensorrt-rtx", "lib")
        raise TensorRTNotFound(
            f"TensorRT-RTX's ONNX parser needs libtensorrt_rtx.so on the loader path ({err}); "
            f"run scripts/deps/trt-rtx.sh, which links it into {link}, and put that folder on "
            "LD_LIBRARY_PATH before starting Python") from None


def parse_shape(text):
    """'1x15000x4096' -> (1, 15000, 4096)."""
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"shape {text!r} is not of the form 1x15000x4096") from None
    if not dims or any(d < 0 for d in dims):
        raise ValueError(f"shape {text!r} must be non-negative extents joined by x")
    return dims


def parse_shapes(text):
    """One profile from 'x:MIN,OPT,MAX[;y:MIN,OPT,MAX]' (one shape for all three is allowed):
    {name: (min, opt, max)}."""
    profile = {}
    for item in filter(None, text.split(";")):
        name, sep, shapes = item.rpartition(":")
        if not sep or not name:
            raise ValueError(f"--shapes item {item!r} is not NAME:MIN,OPT,MAX")
        dims = [parse_shape(s) for s in shapes.split(",")]
        if len(dims) == 1:
            dims *= 3
        if len(dims) != 3:
            raise ValueError(f"--shapes item {item!r} needs one shape or three (min, opt, max)")
        profile[name] = tuple(dims)
    return profile


def _progress_monitor(trt):
    """A builder progress monitor that logs each phase with its duration, where the module has
    IProgressMonitor."""
    if not hasattr(trt, "IProgressMonitor"):
        return None

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.started = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.started[phase_name] = time.perf_counter()
            LOG.info("build phase %s started (%d steps)", phase_name, num_steps)

        def step_complete(self, phase_name, step):
            return True

        def phase_finish(self, phase_name):
            took = time.perf_counter() - self.started.pop(phase_name, time.perf_counter())
            LOG.info("build phase %s finished in %.2f s", phase_name, took)

    return Monitor()


def build_engine(onnx_path, profiles, plugin_library=None, *, module=None, output=None,
                 workspace_bytes=None, config_hook=None):
    """Builds a serialised engine (bytes) from an ONNX model with CustomAttnPlugin nodes.

    profiles: one or more optimisation profiles, each {input name: (min, opt, max)} with shapes
    as tuples. The network is strongly typed. External data beside the model is read by the
    parser. workspace_bytes caps TensorRT's workspace pool; config_hook(config) may adjust the
    builder config last. The plan is written to `output` when given. Raises EngineError with
    TensorRT's errors (a layer the plugin refuses names libfattn's reason).
    """
    trt = import_tensorrt(module)
    if isinstance(profiles, dict):
        profiles = [profiles]
    if not profiles:
        raise ValueError("profiles is empty; give at least one {input: (min, opt, max)}")
    log = _logger(trt)
    log.take()
    load_plugin(trt, plugin_library)
    if is_rtx(trt):
        _check_rtx_parser(trt)
    started = time.perf_counter()
    builder = trt.Builder(log.trt_logger)
    flags = 0
    typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if typed is not None and not is_rtx(trt):
        flags = 1 << int(typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, log.trt_logger)
    LOG.info("parsing %s with %s %s", onnx_path, trt.__name__, trt.__version__)
    if not parser.parse_from_file(os.fspath(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineError(f"TensorRT's ONNX parser failed on {onnx_path}: "
                          f"{'; '.join(errors) or log.take()}")
    parsed = time.perf_counter()
    LOG.info("parsed in %.2f s: %d inputs, %d outputs, %d layers", parsed - started,
             network.num_inputs, network.num_outputs, network.num_layers)
    config = builder.create_builder_config()
    if workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    inputs = {network.get_input(i).name for i in range(network.num_inputs)}
    for index, spec in enumerate(profiles):
        unknown = set(spec) - inputs
        if unknown:
            raise ValueError(f"profile {index} names {sorted(unknown)}, which the network does not "
                             f"have as inputs (it has {sorted(inputs)})")
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in spec.items():
            profile.set_shape(name, tuple(lo), tuple(opt), tuple(hi))
            LOG.info("profile %d: %s min %s opt %s max %s", index, name, tuple(lo), tuple(opt),
                     tuple(hi))
        config.add_optimization_profile(profile)
    monitor = _progress_monitor(trt)
    if monitor is not None:
        config.progress_monitor = monitor
    if config_hook is not None:
        config_hook(config)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(f"TensorRT could not build {onnx_path}: {log.take() or 'no reason given'}")
    data = bytes(plan)
    LOG.info("built in %.2f s (parse %.2f s): %d bytes", time.perf_counter() - parsed,
             parsed - started, len(data))
    if output is not None:
        with open(output, "wb") as f:
            f.write(data)
        LOG.info("engine written to %s", output)
    return data


def _torch_dtype(trt, dtype):
    import torch

    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16,
             trt.int32: torch.int32, trt.int64: torch.int64, trt.int8: torch.int8,
             trt.bool: torch.bool, trt.uint8: torch.uint8}
    if dtype not in table:
        raise EngineError(f"tensor type {dtype} has no torch dtype here")
    return table[dtype]


class Engine:
    """A deserialised engine bound to one optimisation profile, called from PyTorch.

    Outputs are allocated once, at the shapes the profile's maximum input shapes give; each call
    sets the inputs' shapes and addresses, runs on torch's current stream of the engine's device
    (or `stream`), and returns the outputs as views at the call's real shapes (valid until the next
    call). Nothing is allocated per call.
    """

    def __init__(self, plan, plugin_library=None, *, module=None, device=None, profile=0):
        import torch

        trt = import_tensorrt(module)
        self.trt = trt
        log = _logger(trt)
        log.take()
        load_plugin(trt, plugin_library)
        if isinstance(plan, (str, os.PathLike)):
            with open(plan, "rb") as f:
                plan = f.read()
        if not torch.cuda.is_available():
            raise EngineError("no CUDA device: a TensorRT engine runs on a GPU")
        self.device = torch.device(device if device is not None else "cuda")
        if self.device.index is None:  # "cuda" means the current device, compared by index below
            self.device = torch.device("cuda", torch.cuda.current_device())
        with torch.cuda.device(self.device):
            self.runtime = trt.Runtime(log.trt_logger)
            self.engine = self.runtime.deserialize_cuda_engine(plan)
            if self.engine is None:
                reason = log.take() or "no reason given"
                kind = (EngineNotForThisGPU if "compute capabilit" in reason.lower()
                        or "cannot run on this gpu" in reason.lower() else EngineError)
                raise kind(f"TensorRT could not deserialise the engine: {reason}")
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise EngineError(f"TensorRT could not create an execution context: {log.take()}")
            self.profile = profile
            if profile:
                stream = torch.cuda.current_stream(self.device)
                self.context.set_optimization_profile_async(profile, stream.cuda_stream)
                stream.synchronize()
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            self.input_names = [n for n in names
                                if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            self.output_names = [n for n in names if n not in self.input_names]
            self.input_dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n))
                                 for n in self.input_names}
            self.max_shapes = {n: tuple(self.engine.get_tensor_profile_shape(n, profile)[2])
                               for n in self.input_names}
            for name, shape in self.max_shapes.items():
                self.context.set_input_shape(name, shape)
            self._outputs = {}
            for name in self.output_names:
                shape = tuple(self.context.get_tensor_shape(name))
                self._outputs[name] = torch.empty(
                    shape, dtype=_torch_dtype(trt, self.engine.get_tensor_dtype(name)),
                    device=self.device)
                self.context.set_tensor_address(name, self._outputs[name].data_ptr())
        LOG.info("engine deserialised: inputs %s (max %s), outputs %s", self.input_names,
                 self.max_shapes, self.output_names)

    def __call__(self, *args, stream=None, **inputs):
        """Runs with the inputs by name (or in the engine's input order); returns {name: output}."""
        import torch

        if args:
            if len(args) > len(self.input_names):
                raise TypeError(f"the engine has {len(self.input_names)} inputs; got {len(args)}")
            inputs.update(zip(self.input_names, args))
        missing = [n for n in self.input_names if n not in inputs]
        if missing or len(inputs) != len(self.input_names):
            raise TypeError(f"the engine's inputs are {self.input_names}; got {sorted(inputs)}")
        for name, tensor in inputs.items():
            if tensor.device != self.device or tensor.dtype != self.input_dtypes[name]:
                raise TypeError(f"input {name} is {tensor.dtype} on {tensor.device}; the engine "
                                f"takes {self.input_dtypes[name]} on {self.device}")
            if not tensor.is_contiguous():
                raise TypeError(f"input {name} is not contiguous")
            if not self.context.set_input_shape(name, tuple(tensor.shape)):
                raise EngineError(f"input {name} shape {tuple(tensor.shape)} is outside the "
                                  f"profile: {self._log_text()}")
            self.context.set_tensor_address(name, tensor.data_ptr())
        handle = (stream or torch.cuda.current_stream(self.device)).cuda_stream
        if not self.context.execute_async_v3(handle):
            raise EngineError(f"TensorRT's execute_async_v3 failed: {self._log_text()}")
        return {name: self._view(name) for name in self.output_names}

    def _view(self, name):
        shape = tuple(self.context.get_tensor_shape(name))
        buffer = self._outputs[name]
        count = 1
        for d in shape:
            count *= d
        return buffer.view(-1)[:count].view(shape)

    def _log_text(self):
        return _logger(self.trt).take() or "no reason given"


def _cmd_build(args):
    profiles = [parse_shapes(s) for s in args.shapes]
    build_engine(args.onnx, profiles, args.plugin, module=args.module, output=args.output,
                 workspace_bytes=args.workspace)
    return 0


def _cmd_run(args):
    import torch

    engine = Engine(args.plan, args.plugin, module=args.module)
    shapes = {}
    for spec in args.shapes or []:
        shapes.update({name: dims[1] for name, dims in parse_shapes(spec).items()})
    gen = torch.Generator(device=engine.device).manual_seed(0)
    inputs = {}
    for name in engine.input_names:
        lo, opt, hi = engine.engine.get_tensor_profile_shape(name, engine.profile)
        shape = tuple(shapes.get(name, opt))
        inputs[name] = torch.randn(shape, generator=gen, device=engine.device,
                                   dtype=torch.float32).to(engine.input_dtypes[name])
    for _ in range(args.warmup):
        engine(**inputs)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(args.iterations):
        engine(**inputs)
    end.record()
    end.synchronize()
    ms = start.elapsed_time(end) / args.iterations
    shown = ", ".join(f"{n} {tuple(t.shape)}" for n, t in inputs.items())
    print(f"{args.plan}: {shown}: {ms:.3f} ms per run (mean of {args.iterations})")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fattn.trt", description=__doc__.split("\n")[0])
    parser.add_argument("--module", choices=MODULES, help="TensorRT module (default: first found)")
    parser.add_argument("--plugin", help=f"path of {PLUGIN_LIBRARY} (default: found)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="TensorRT's own INFO and VERBOSE messages too")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build an engine from an ONNX model")
    build.add_argument("onnx")
    build.add_argument("--shapes", action="append", required=True,
                       help="one optimisation profile: NAME:MIN,OPT,MAX[;NAME:...], shapes as "
                            "1x15000x4096; repeat for more profiles")
    build.add_argument("-o", "--output", required=True, help="engine file to write")
    build.add_argument("--workspace", type=int, help="workspace pool limit in bytes")
    run = sub.add_parser("run", help="time an engine on random inputs")
    run.add_argument("plan")
    run.add_argument("--shapes", action="append",
                     help="input shapes NAME:SHAPE[;NAME:SHAPE] (default: the profile's opt)")
    run.add_argument("--iterations", type=int, default=20)
    run.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")
    LOG.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return _cmd_build(args) if args.command == "build" else _cmd_run(args)
    except (TensorRTNotFound, PluginLibraryNotFound, EngineError, ValueError) as err:
        print(f"fattn.trt {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
