// TensorRT's ABI for CustomAttnPlugin: one IPluginV3 class (core, build and runtime capabilities)
// and its IPluginCreatorV3One. TensorRT's interfaces are C++, so this file is; every decision is
// made by the C core (plugin/core/fattn_plugin.h), which this file feeds with plain structs.
//
// Built twice from this file:
//  - libfattn_trt_plugin.so exports getCreators and setLoggerFinder, for
//    IPluginRegistry::loadLibrary and `trtexec --dynamicPlugins`;
//  - with FATTN_TRT_STATIC_REGISTRATION, libfattn_trt_plugin_static.so registers its creator with
//    TensorRT's registry when loaded (`trtexec --staticPlugins`, dlopen). Neither library links
//    libnvinfer: the static one finds getPluginRegistry at load time (see resolve_nvinfer).
// TensorRT 11's headers use their own deprecated declarations (IPluginV2, IStreamReader, ...)
// in inline code; only that diagnostic is silenced, and only for them. This file uses none.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include <NvInferRuntime.h>
#pragma GCC diagnostic pop

#include <atomic>
#include <cstdio>
#include <cstring>
#include <new>

#include <dlfcn.h>

#include "fattn_plugin.h"

using namespace nvinfer1;

#define FATTN_TRT_EXPORT extern "C" __attribute__((visibility("default")))

namespace
{

// The core numbers its field types as TensorRT does, so conversion is a cast; these pin that down.
static_assert(static_cast<int32_t>(PluginFieldType::kFLOAT32) == FATTN_PLUGIN_FIELD_FLOAT32, "");
static_assert(static_cast<int32_t>(PluginFieldType::kINT32) == FATTN_PLUGIN_FIELD_INT32, "");
static_assert(static_cast<int32_t>(PluginFieldType::kUNKNOWN) == FATTN_PLUGIN_FIELD_BYTES, "");
static_assert(static_cast<int32_t>(PluginFieldType::kINT64) == FATTN_PLUGIN_FIELD_INT64, "");
static_assert(static_cast<int32_t>(PluginFieldType::kFP4) == FATTN_PLUGIN_FIELD_FP4, "");
static_assert(Dims::MAX_DIMS == FATTN_PLUGIN_MAX_DIMS, "");

// ---- Logging -------------------------------------------------------------------------------

#if defined(FATTN_TRT_STATIC_REGISTRATION)
// Finds a libnvinfer function without linking libnvinfer: first among the process's global
// symbols (trtexec and C++ programs link it), then in an already loaded libnvinfer (TensorRT's
// Python module loads it privately), then by loading it, as a link-time dependency would have.
void* resolve_nvinfer(char const* symbol) noexcept
{
    if (void* p = dlsym(RTLD_DEFAULT, symbol))
        return p;
    char lib[32];
    std::snprintf(lib, sizeof lib, "libnvinfer.so.%d", NV_TENSORRT_MAJOR);
    void* handle = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD);
    if (!handle)
        handle = dlopen(lib, RTLD_LAZY);
    return handle ? dlsym(handle, symbol) : nullptr;
}

ILogger* find_logger() noexcept
{
    using GetLogger = ILogger* (*) () noexcept;
    auto get = reinterpret_cast<GetLogger>(resolve_nvinfer("getLogger"));
    return get ? get() : nullptr;
}
#else
// Set once by TensorRT through setLoggerFinder; the one piece of state TensorRT's ABI requires.
std::atomic<ILoggerFinder*> g_logger_finder{nullptr};

ILogger* find_logger() noexcept
{
    ILoggerFinder* finder = g_logger_finder.load();
    return finder ? finder->findLogger() : nullptr;
}
#endif

void log_message(ILogger::Severity severity, char const* layer, char const* method, char const* text) noexcept
{
    char line[768];
    std::snprintf(line, sizeof line, "%s (layer '%s') %s: %s", FATTN_PLUGIN_NAME, layer, method, text);
    if (ILogger* logger = find_logger())
        logger->log(severity, line);
    else
        std::fprintf(stderr, "[fattn] %s\n", line);
}

void log_error(char const* layer, char const* method, fattn_plugin_error const& err) noexcept
{
    log_message(ILogger::Severity::kERROR, layer, method, err.message);
}

// ---- TensorRT structs to the core's ----------------------------------------------------------

int32_t to_fattn_dtype(DataType type) noexcept
{
    switch (type)
    {
    case DataType::kFLOAT: return FATTN_DTYPE_F32;
    case DataType::kHALF: return FATTN_DTYPE_F16;
    case DataType::kBF16: return FATTN_DTYPE_BF16;
    default: return FATTN_PLUGIN_DTYPE_OTHER;
    }
}

DataType to_trt_dtype(int32_t dtype) noexcept
{
    switch (dtype)
    {
    case FATTN_DTYPE_F16: return DataType::kHALF;
    case FATTN_DTYPE_BF16: return DataType::kBF16;
    default: return DataType::kFLOAT;
    }
}

char const* trt_type_name(DataType type) noexcept
{
    switch (type)
    {
    case DataType::kFLOAT: return "FLOAT";
    case DataType::kHALF: return "HALF";
    case DataType::kINT8: return "INT8";
    case DataType::kINT32: return "INT32";
    case DataType::kBOOL: return "BOOL";
    case DataType::kUINT8: return "UINT8";
    case DataType::kFP8: return "FP8";
    case DataType::kBF16: return "BF16";
    case DataType::kINT64: return "INT64";
    case DataType::kINT4: return "INT4";
    case DataType::kFP4: return "FP4";
    case DataType::kE8M0: return "E8M0";
    }
    return "UNKNOWN";
}

fattn_plugin_dims to_dims(Dims const& d) noexcept
{
    fattn_plugin_dims out{};
    out.nb_dims = d.nbDims;
    for (int32_t i = 0; i < d.nbDims && i < Dims::MAX_DIMS; ++i)
        out.d[i] = d.d[i];
    return out;
}

fattn_plugin_tensor to_tensor(PluginTensorDesc const& desc) noexcept
{
    fattn_plugin_tensor t{};
    t.dims = to_dims(desc.dims);
    t.dtype = to_fattn_dtype(desc.type);
    t.linear = desc.format == TensorFormat::kLINEAR;
    t.type_name = trt_type_name(desc.type);
    return t;
}

fattn_plugin_dyn_tensor to_dyn_tensor(DynamicPluginTensorDesc const& desc) noexcept
{
    fattn_plugin_dyn_tensor t{};
    t.desc = to_tensor(desc.desc);
    t.min = to_dims(desc.min);
    t.max = to_dims(desc.max);
    return t;
}

constexpr int32_t kNbIO = FATTN_PLUGIN_NUM_INPUTS + FATTN_PLUGIN_NUM_OUTPUTS;

// ---- The plugin ------------------------------------------------------------------------------

class AttnPlugin final : public IPluginV3,
                         public IPluginV3OneCore,
                         public IPluginV3OneBuild,
                         public IPluginV3OneRuntime
{
public:
    AttnPlugin(char const* name, fattn_plugin_config const& config) noexcept
        : mConfig(config)
    {
        std::snprintf(mName, sizeof mName, "%s", name ? name : "");
        fattn_plugin_config_describe(&mConfig, mDescription, sizeof mDescription);
    }

    AttnPlugin(AttnPlugin const&) = delete;
    AttnPlugin& operator=(AttnPlugin const&) = delete;
    ~AttnPlugin() override = default;

    // IPluginV3
    IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override
    {
        switch (type)
        {
        case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
        case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
        case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
        }
        return nullptr;
    }

    IPluginV3* clone() noexcept override
    {
        return new (std::nothrow) AttnPlugin(mName, mConfig);
    }

    // IPluginV3OneCore
    AsciiChar const* getPluginName() const noexcept override { return FATTN_PLUGIN_NAME; }
    AsciiChar const* getPluginVersion() const noexcept override { return FATTN_PLUGIN_VERSION; }
    AsciiChar const* getPluginNamespace() const noexcept override { return FATTN_PLUGIN_NAMESPACE; }

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override { return FATTN_PLUGIN_NUM_OUTPUTS; }

    int32_t getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
        int32_t nbInputs) const noexcept override
    {
        fattn_plugin_error err{};
        fattn_status st = fattn_plugin_check_io_counts(nbInputs, nbOutputs, &err);
        int32_t out = 0;
        if (st == FATTN_OK)
        {
            fattn_plugin_tensor in[FATTN_PLUGIN_NUM_INPUTS]{};
            for (int32_t i = 0; i < nbInputs; ++i)
            {
                in[i].dtype = to_fattn_dtype(inputTypes[i]);
                in[i].type_name = trt_type_name(inputTypes[i]);
            }
            st = fattn_plugin_output_dtype(in, nbInputs, &out, &err);
        }
        if (st != FATTN_OK)
        {
            log_error(mName, "getOutputDataTypes", err);
            return 1;
        }
        outputTypes[0] = to_trt_dtype(out);
        return 0;
    }

    int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
        int32_t nbShapeInputs, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& /*exprBuilder*/) noexcept override
    {
        fattn_plugin_error err{};
        fattn_status st = fattn_plugin_check_io_counts(nbInputs + nbShapeInputs, nbOutputs, &err);
        if (st == FATTN_OK)
        {
            int32_t ranks[FATTN_PLUGIN_NUM_INPUTS];
            for (int32_t i = 0; i < nbInputs; ++i)
                ranks[i] = inputs[i].nbDims;
            st = fattn_plugin_check_ranks(ranks, nbInputs, &err);
        }
        if (st != FATTN_OK)
        {
            log_error(mName, "getOutputShapes", err);
            return 1;
        }
        outputs[0] = inputs[0];
        return 0;
    }

    bool supportsFormatCombination(
        int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept override
    {
        if (pos < 0 || pos >= kNbIO || nbInputs + nbOutputs != kNbIO)
            return false;
        // Only inOut[0..pos] hold meaningful values at this point.
        fattn_plugin_tensor io[kNbIO]{};
        for (int32_t i = 0; i <= pos; ++i)
            io[i] = to_tensor(inOut[i].desc);
        return fattn_plugin_supports_format(pos, io, nbInputs, nbOutputs) != 0;
    }

    int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override
    {
        fattn_plugin_error err{};
        fattn_status st = fattn_plugin_check_io_counts(nbInputs, nbOutputs, &err);
        if (st == FATTN_OK)
        {
            fattn_plugin_dyn_tensor ins[FATTN_PLUGIN_NUM_INPUTS];
            fattn_plugin_dyn_tensor outs[FATTN_PLUGIN_NUM_OUTPUTS];
            for (int32_t i = 0; i < nbInputs; ++i)
                ins[i] = to_dyn_tensor(in[i]);
            outs[0] = to_dyn_tensor(out[0]);
            st = fattn_plugin_configure(&mConfig, ins, nbInputs, outs, nbOutputs, &err);
        }
        if (st != FATTN_OK)
        {
            log_error(mName, "configurePlugin", err);
            return 1;
        }
        return 0;
    }

    size_t getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        DynamicPluginTensorDesc const* /*outputs*/, int32_t nbOutputs) const noexcept override
    {
        fattn_plugin_error err{};
        size_t bytes = 0;
        fattn_status st = fattn_plugin_check_io_counts(nbInputs, nbOutputs, &err);
        if (st == FATTN_OK)
        {
            fattn_plugin_dyn_tensor ins[FATTN_PLUGIN_NUM_INPUTS];
            for (int32_t i = 0; i < nbInputs; ++i)
                ins[i] = to_dyn_tensor(inputs[i]);
            st = fattn_plugin_workspace_size(&mConfig, ins, nbInputs, &bytes, &err);
        }
        if (st != FATTN_OK)
        {
            log_error(mName, "getWorkspaceSize", err);
            return 0;
        }
        return bytes;
    }

    // The configuration decides the kernel's timing beyond what TensorRT keys on (shapes, types).
    char const* getTimingCacheID() noexcept override { return mDescription; }
    char const* getMetadataString() noexcept override { return mDescription; }

    // IPluginV3OneRuntime
    int32_t onShapeChange(
        PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept override
    {
        fattn_plugin_error err{};
        fattn_status st = fattn_plugin_check_io_counts(nbInputs, nbOutputs, &err);
        if (st == FATTN_OK)
        {
            fattn_plugin_tensor ins[FATTN_PLUGIN_NUM_INPUTS];
            fattn_plugin_tensor outs[FATTN_PLUGIN_NUM_OUTPUTS];
            for (int32_t i = 0; i < nbInputs; ++i)
                ins[i] = to_tensor(in[i]);
            outs[0] = to_tensor(out[0]);
            st = fattn_plugin_on_shape_change(&mConfig, ins, nbInputs, outs, nbOutputs, &err);
        }
        if (st != FATTN_OK)
        {
            log_error(mName, "onShapeChange", err);
            return 1;
        }
        return 0;
    }

    // TensorRT passes as many descriptions as the layer has inputs and outputs, which
    // configurePlugin/onShapeChange have checked to be 3 and 1.
    int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc, void const* const* inputs,
        void* const* outputs, void* workspace, cudaStream_t stream) noexcept override
    {
        fattn_plugin_tensor ins[FATTN_PLUGIN_NUM_INPUTS];
        fattn_plugin_tensor outs[FATTN_PLUGIN_NUM_OUTPUTS];
        for (int32_t i = 0; i < FATTN_PLUGIN_NUM_INPUTS; ++i)
            ins[i] = to_tensor(inputDesc[i]);
        outs[0] = to_tensor(outputDesc[0]);
        fattn_plugin_error err{};
        fattn_status st = fattn_plugin_enqueue(&mConfig, ins, FATTN_PLUGIN_NUM_INPUTS, outs, FATTN_PLUGIN_NUM_OUTPUTS,
            inputs, outputs, workspace, stream, &err);
        if (st != FATTN_OK)
        {
            log_error(mName, "enqueue", err);
            return 1;
        }
        return 0;
    }

    IPluginV3* attachToContext(IPluginResourceContext* /*context*/) noexcept override
    {
        return clone();
    }

    PluginFieldCollection const* getFieldsToSerialize() noexcept override
    {
        fattn_plugin_error err{};
        if (fattn_plugin_config_serialize(&mConfig, mSerial, sizeof mSerial, &err) != FATTN_OK)
        {
            log_error(mName, "getFieldsToSerialize", err);
            return nullptr;
        }
        mField = PluginField(FATTN_PLUGIN_SERIAL_FIELD, mSerial, PluginFieldType::kUNKNOWN, FATTN_PLUGIN_SERIAL_SIZE);
        mFields.nbFields = 1;
        mFields.fields = &mField;
        return &mFields;
    }

private:
    fattn_plugin_config mConfig;
    char mName[128];
    char mDescription[96];
    // Storage that getFieldsToSerialize hands out; it must outlive the call.
    uint8_t mSerial[FATTN_PLUGIN_SERIAL_SIZE]{};
    PluginField mField;
    PluginFieldCollection mFields{};
};

// ---- The creator -----------------------------------------------------------------------------

constexpr int32_t kMaxFields = 16;

class AttnPluginCreator final : public IPluginCreatorV3One
{
public:
    AttnPluginCreator() noexcept
    {
        int32_t count = 0;
        fattn_plugin_field_spec const* schema = fattn_plugin_field_schema(&count);
        for (int32_t i = 0; i < count && i < kMaxFields; ++i)
            mFieldNames[i] = PluginField(schema[i].name, nullptr, static_cast<PluginFieldType>(schema[i].type), 1);
        mFieldCollection.nbFields = count;
        mFieldCollection.fields = mFieldNames;
    }

    IPluginV3* createPlugin(AsciiChar const* name, PluginFieldCollection const* fc, TensorRTPhase phase) noexcept override
    {
        char const* layer = name ? name : "";
        fattn_plugin_error err{};
        int32_t const count = fc ? fc->nbFields : 0;
        if (count < 0 || count > kMaxFields || (count > 0 && !fc->fields))
        {
            std::snprintf(err.message, sizeof err.message,
                "field collection is malformed: nbFields %d, fields %p (%s has %d fields)",
                static_cast<int>(count), static_cast<void const*>(fc ? fc->fields : nullptr),
                FATTN_PLUGIN_NAME, static_cast<int>(mFieldCollection.nbFields));
            log_error(layer, "createPlugin", err);
            return nullptr;
        }
        fattn_plugin_field fields[kMaxFields];
        for (int32_t i = 0; i < count; ++i)
        {
            PluginField const& f = fc->fields[i];
            fields[i] = fattn_plugin_field{f.name, f.data, static_cast<int32_t>(f.type), f.length};
        }
        fattn_plugin_config config;
        fattn_status st = phase == TensorRTPhase::kRUNTIME
            ? fattn_plugin_config_from_serialized_fields(fields, count, &config, &err)
            : fattn_plugin_config_from_fields(fields, count, &config, &err);
        if (st != FATTN_OK)
        {
            log_error(layer, phase == TensorRTPhase::kRUNTIME ? "createPlugin(kRUNTIME)" : "createPlugin(kBUILD)", err);
            return nullptr;
        }
        IPluginV3* plugin = new (std::nothrow) AttnPlugin(layer, config);
        if (!plugin)
        {
            std::snprintf(err.message, sizeof err.message, "out of host memory");
            log_error(layer, "createPlugin", err);
        }
        return plugin;
    }

    PluginFieldCollection const* getFieldNames() noexcept override { return &mFieldCollection; }
    AsciiChar const* getPluginName() const noexcept override { return FATTN_PLUGIN_NAME; }
    AsciiChar const* getPluginVersion() const noexcept override { return FATTN_PLUGIN_VERSION; }
    AsciiChar const* getPluginNamespace() const noexcept override { return FATTN_PLUGIN_NAMESPACE; }

private:
    PluginField mFieldNames[kMaxFields];
    PluginFieldCollection mFieldCollection{};
};

} // namespace

#if defined(FATTN_TRT_STATIC_REGISTRATION)

namespace
{
// Registers the creator while the library loads, as REGISTER_TENSORRT_PLUGIN would, but without a
// link-time reference to libnvinfer's getPluginRegistry.
struct StaticRegistration
{
    AttnPluginCreator creator;

    StaticRegistration() noexcept
    {
        using GetRegistry = IPluginRegistry* (*) () noexcept;
        auto get = reinterpret_cast<GetRegistry>(resolve_nvinfer("getPluginRegistry"));
        if (!get)
        {
            std::fprintf(stderr,
                "[fattn] %s not registered: getPluginRegistry was not found in the process nor in "
                "libnvinfer.so.%d. Load TensorRT before this library, or load libfattn_trt_plugin.so "
                "with IPluginRegistry::loadLibrary or trtexec --dynamicPlugins.\n",
                FATTN_PLUGIN_NAME, NV_TENSORRT_MAJOR);
            return;
        }
        IPluginRegistry* registry = get();
        if (!registry || !registry->registerCreator(creator, FATTN_PLUGIN_NAMESPACE))
        {
            fattn_plugin_error err{};
            std::snprintf(err.message, sizeof err.message,
                "TensorRT's plugin registry refused the creator (is %s version %s already registered, "
                "e.g. by loading libfattn_trt_plugin.so as well?)",
                FATTN_PLUGIN_NAME, FATTN_PLUGIN_VERSION);
            log_error("", "static registration", err);
        }
    }
};

StaticRegistration gRegistration;
} // namespace

#else

FATTN_TRT_EXPORT void setLoggerFinder(ILoggerFinder* finder)
{
    g_logger_finder.store(finder);
}

FATTN_TRT_EXPORT IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static AttnPluginCreator creator;
    static IPluginCreatorInterface* const creators[] = {&creator};
    nbCreators = 1;
    return creators;
}

#endif
