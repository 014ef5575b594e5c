#include "bridge.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <sstream>

namespace vilref {

void ThrowTypeError(const std::string& message) { throw BoundaryError(ErrorKind::TypeError, message); }
void ThrowRangeError(const std::string& message) { throw BoundaryError(ErrorKind::RangeError, message); }

// LibTorch's failed internal assertions ("... INTERNAL ASSERT FAILED at "file":line, please report a
// bug to PyTorch. <detail>") reach vilref's users only when an input went unchecked: say so, keep the
// detail and the place, and send the report to vilref rather than PyTorch.
std::string WithoutInternals(const std::string& message) {
  const std::string marker = "INTERNAL ASSERT FAILED at ";
  size_t at = message.find(marker);
  if (at == std::string::npos) return message;
  std::string where = message.substr(at + marker.size());
  std::string detail;
  size_t advice = where.find(", please report a bug to PyTorch.");
  if (advice != std::string::npos) {
    detail = where.substr(advice + 33);
    where = where.substr(0, advice);
  }
  size_t start = detail.find_first_not_of(' ');
  detail = start == std::string::npos ? "" : detail.substr(start);
  return "LibTorch rejected an input vilref did not check" + (detail.empty() ? "" : ": " + detail) +
         " (an internal assertion at " + where + "); please report this to vilref with the command that caused it";
}

std::pair<ErrorKind, std::string> DescribeException(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const BoundaryError& e) {
    return {e.kind(), e.what()};
  } catch (const c10::Error& e) {
    // what() carries a long C++ backtrace; users get the one-line message.
    return {ErrorKind::Error, WithoutInternals(e.what_without_backtrace())};
  } catch (const Napi::Error& e) {
    return {ErrorKind::Error, e.Message()};
  } catch (const std::bad_alloc&) {
    return {ErrorKind::RangeError, "out of memory: the tensors asked for do not fit"};
  } catch (const std::exception& e) {
    return {ErrorKind::Error, e.what()};
  } catch (...) {
    return {ErrorKind::Error, "unknown native error"};
  }
}

Napi::Error MakeJsError(Napi::Env env, ErrorKind kind, const std::string& message) {
  switch (kind) {
    case ErrorKind::TypeError:
      return Napi::TypeError::New(env, message);
    case ErrorKind::RangeError:
      return Napi::RangeError::New(env, message);
    default:
      return Napi::Error::New(env, message);
  }
}

std::string ShapeText(c10::IntArrayRef shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

namespace {

struct ArrayKind {
  napi_typedarray_type js;
  at::ScalarType dtype;
  const char* name;
};

constexpr ArrayKind kArrayKinds[] = {
    {napi_float32_array, at::kFloat, "Float32Array"}, {napi_float64_array, at::kDouble, "Float64Array"},
    {napi_int32_array, at::kInt, "Int32Array"},       {napi_bigint64_array, at::kLong, "BigInt64Array"},
    {napi_uint8_array, at::kByte, "Uint8Array"},      {napi_int8_array, at::kChar, "Int8Array"},
    {napi_int16_array, at::kShort, "Int16Array"},     {napi_uint8_clamped_array, at::kByte, "Uint8ClampedArray"},
};

const char* JsArrayName(napi_typedarray_type type) {
  switch (type) {
    case napi_uint16_array:
      return "Uint16Array";
    case napi_uint32_array:
      return "Uint32Array";
    case napi_biguint64_array:
      return "BigUint64Array";
    default:
      for (const auto& k : kArrayKinds)
        if (k.js == type) return k.name;
      return "a typed array";
  }
}

std::string Describe(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsArray()) return "an Array";
  if (v.IsTypedArray()) return JsArrayName(v.As<Napi::TypedArray>().TypedArrayType());
  if (v.IsArrayBuffer()) return "an ArrayBuffer";
  if (v.IsNumber()) return "a number";
  if (v.IsString()) return "a string";
  if (v.IsBoolean()) return "a boolean";
  if (v.IsBigInt()) return "a bigint";
  if (v.IsFunction()) return "a function";
  return "an object";
}

std::string ExpectedShapeText(const TensorSpec& spec) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < spec.dims.size(); ++i) {
    out << (i ? ", " : "");
    if (spec.dims[i] < 0)
      out << '*';
    else
      out << spec.dims[i];
  }
  out << ']';
  return out.str();
}

std::string DtypeList(const TensorSpec& spec) {
  std::string out;
  for (size_t i = 0; i < spec.dtypes.size(); ++i) {
    if (i) out += i + 1 == spec.dtypes.size() ? " or " : ", ";
    out += TypedArrayName(spec.dtypes[i]);
  }
  return out;
}

template <typename T>
void CheckFinite(const T* data, int64_t n, const std::string& name) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(data[i])) {
      std::ostringstream msg;
      msg << name << ".data[" << i << "] is "
          << (std::isnan(data[i]) ? "NaN"
              : data[i] > 0       ? "Infinity"
                                  : "-Infinity")
          << ": non-finite values are not allowed here";
      ThrowRangeError(msg.str());
    }
  }
}

}  // namespace

bool HasTypedArray(at::ScalarType dtype) {
  for (const auto& k : kArrayKinds)
    if (k.dtype == dtype) return true;
  return false;
}

const char* TypedArrayName(at::ScalarType dtype) {
  for (const auto& k : kArrayKinds)
    if (k.dtype == dtype) return k.name;
  if (dtype == at::kBFloat16) return "Uint16Array (dtype \"bfloat16\")";
  if (dtype == at::kHalf) return "Uint16Array (dtype \"float16\")";
  return "an unsupported typed array";
}

int64_t ReadInteger(const Napi::Value& value, const std::string& name, int64_t lo, int64_t hi) {
  if (!value.IsNumber()) ThrowTypeError(name + ": expected an integer, got " + Describe(value));
  double d = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d) ThrowTypeError(name + ": expected an integer, got " + std::to_string(d));
  if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
    ThrowRangeError(name + ": " + std::to_string(static_cast<long long>(d)) + " is outside [" + std::to_string(lo) +
                    ", " + std::to_string(hi) + "]");
  }
  return static_cast<int64_t>(d);
}

namespace {

std::string OptionName(const std::string& prefix, const char* key) { return prefix + "." + key; }

std::string QuotedList(const std::vector<std::string>& values) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i)
    out += (i == 0 ? "" : i + 1 == values.size() ? " or " : ", ") + ("\"" + values[i] + "\"");
  return out;
}

}  // namespace

at::ScalarType FloatDtype(const std::string& name) {
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float16") return at::kHalf;
  if (name == "float32") return at::kFloat;
  ThrowRangeError("dtype: expected " + QuotedList(FloatDtypeNames()) + ", got \"" + name + "\"");
}

const char* FloatDtypeName(at::ScalarType dtype) {
  return dtype == at::kBFloat16 ? "bfloat16" : dtype == at::kHalf ? "float16" : "float32";
}

const std::vector<std::string>& FloatDtypeNames() {
  static const std::vector<std::string> names{"float32", "bfloat16", "float16"};
  return names;
}

Napi::Object ReadOptions(const Napi::Value& value, const std::string& name, const std::string& expected) {
  if (!value.IsObject() || value.IsArray())
    ThrowTypeError(name + ": expected " + expected + ", got " + Describe(value));
  return value.As<Napi::Object>();
}

bool ReadBool(const Napi::Object& obj, const std::string& prefix, const char* key) {
  Napi::Value v = obj.Get(key);
  if (!v.IsBoolean()) ThrowTypeError(OptionName(prefix, key) + ": expected a boolean, got " + Describe(v));
  return v.As<Napi::Boolean>().Value();
}

double ReadNumber(const Napi::Object& obj, const std::string& prefix, const char* key, double lo, double hi) {
  return ReadNumberValue(obj.Get(key), OptionName(prefix, key), lo, hi);
}

double ReadNumberValue(const Napi::Value& v, const std::string& name, double lo, double hi) {
  if (!v.IsNumber()) ThrowTypeError(name + ": expected a number, got " + Describe(v));
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d < lo || d > hi)
    ThrowRangeError(name + ": " + std::to_string(d) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) +
                    "]");
  return d;
}

int64_t ReadInt(const Napi::Object& obj, const std::string& prefix, const char* key, int64_t lo, int64_t hi) {
  return ReadInteger(obj.Get(key), OptionName(prefix, key), lo, hi);
}

uint64_t ReadSeed(const Napi::Object& obj, const std::string& prefix, const char* key) {
  return static_cast<uint64_t>(ReadInt(obj, prefix, key, 0, 9007199254740991LL));
}

std::string ReadString(const Napi::Object& obj, const std::string& prefix, const char* key) {
  Napi::Value v = obj.Get(key);
  if (!v.IsString()) ThrowTypeError(OptionName(prefix, key) + ": expected a string, got " + Describe(v));
  return v.As<Napi::String>().Utf8Value();
}

std::vector<int64_t> ReadIntArray(const Napi::Object& obj, const std::string& prefix, const char* key, int64_t lo,
                                  int64_t hi) {
  Napi::Value v = obj.Get(key);
  const std::string name = OptionName(prefix, key);
  if (!v.IsArray()) ThrowTypeError(name + ": expected an array of integers, got " + Describe(v));
  auto arr = v.As<Napi::Array>();
  std::vector<int64_t> out;
  for (uint32_t i = 0; i < arr.Length(); ++i)
    out.push_back(ReadInteger(arr.Get(i), name + "[" + std::to_string(i) + "]", lo, hi));
  return out;
}

std::string ReadEnumName(const Napi::Object& obj, const std::string& prefix, const char* key,
                         const std::vector<std::string>& allowed) {
  return ReadEnumValue(obj.Get(key), OptionName(prefix, key), allowed);
}

std::string ReadEnumValue(const Napi::Value& v, const std::string& name, const std::vector<std::string>& allowed) {
  if (!v.IsString()) ThrowTypeError(name + ": expected " + QuotedList(allowed) + ", got " + Describe(v));
  std::string s = v.As<Napi::String>().Utf8Value();
  for (const auto& a : allowed)
    if (a == s) return s;
  ThrowRangeError(name + ": expected " + QuotedList(allowed) + ", got \"" + s + "\"");
}

namespace {

// The element type of a tensor's `data`, one of spec.dtypes. 16-bit floats have no typed array of
// their own: raw bits in a Uint16Array, named by `dtype`.
const ArrayKind& ReadArrayKind(const Napi::Object& obj, const Napi::TypedArray& array, const TensorSpec& spec) {
  const std::string& name = spec.name;
  const ArrayKind* kind = nullptr;
  for (const auto& k : kArrayKinds)
    if (k.js == array.TypedArrayType()) kind = &k;
  static const ArrayKind kBFloat16Bits{napi_uint16_array, at::kBFloat16, "Uint16Array (dtype \"bfloat16\")"};
  static const ArrayKind kFloat16Bits{napi_uint16_array, at::kHalf, "Uint16Array (dtype \"float16\")"};
  if (array.TypedArrayType() == napi_uint16_array) {
    Napi::Value dtype = obj.Get("dtype");
    std::string d = dtype.IsString() ? dtype.As<Napi::String>().Utf8Value() : "";
    if (d == "bfloat16")
      kind = &kBFloat16Bits;
    else if (d == "float16")
      kind = &kFloat16Bits;
    else if (!dtype.IsUndefined())
      ThrowTypeError(name + ".dtype: expected \"bfloat16\" or \"float16\" for Uint16Array data, got " +
                     Describe(dtype));
  }
  bool allowed = false;
  for (auto d : spec.dtypes) allowed = allowed || (kind && d == kind->dtype);
  if (!allowed)
    ThrowTypeError(name + ".data: expected " + DtypeList(spec) + ", got " +
                   (kind ? kind->name : JsArrayName(array.TypedArrayType())));
  return *kind;
}

struct ShapeRead {
  std::vector<int64_t> shape;
  uint64_t elements = 1;
  bool overflow = false;  // the element count passes 2^64
};

// A tensor's `shape`: an array of non-negative integers, each named in its error.
ShapeRead ReadShape(const Napi::Object& obj, const std::string& name) {
  Napi::Value shapeValue = obj.Get("shape");
  if (!shapeValue.IsArray())
    ThrowTypeError(name + ".shape: expected an array of non-negative integers, got " + Describe(shapeValue));
  auto shapeArray = shapeValue.As<Napi::Array>();
  ShapeRead r;
  for (uint32_t i = 0; i < shapeArray.Length(); ++i) {
    std::string dimName = name + ".shape[" + std::to_string(i) + "]";
    Napi::Value d = shapeArray.Get(i);
    if (!d.IsNumber()) ThrowTypeError(dimName + ": expected a non-negative integer, got " + Describe(d));
    double x = d.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(x) || std::floor(x) != x)
      ThrowTypeError(dimName + ": expected a non-negative integer, got " + std::to_string(x));
    if (x < 0) ThrowRangeError(dimName + ": " + std::to_string(static_cast<long long>(x)) + " is negative");
    if (x > 9007199254740991.0) ThrowRangeError(dimName + ": " + std::to_string(x) + " is too large");
    auto n = static_cast<uint64_t>(x);
    if (n != 0 && r.elements > std::numeric_limits<uint64_t>::max() / n) r.overflow = true;
    r.elements *= n;
    r.shape.push_back(static_cast<int64_t>(n));
  }
  return r;
}

// The shape fits the spec's rank and dimensions, and the data holds exactly its elements.
void CheckShape(const ShapeRead& r, const TensorSpec& spec, size_t length) {
  const std::string& name = spec.name;
  const std::vector<int64_t>& shape = r.shape;
  bool rankOk = spec.anyRank || shape.size() == spec.dims.size();
  bool dimsOk = rankOk;
  for (size_t i = 0; dimsOk && !spec.anyRank && i < shape.size(); ++i)
    dimsOk = spec.dims[i] < 0 || spec.dims[i] == shape[i];
  if (!dimsOk) {
    ThrowRangeError(name + ": expected shape " + ExpectedShapeText(spec) + " (" + std::to_string(spec.dims.size()) +
                    "-D), got " + ShapeText(shape));
  }
  if (r.overflow || r.elements != length) {
    ThrowRangeError(name + ": shape " + ShapeText(shape) + " needs " +
                    (r.overflow ? std::string("more than 2^64") : std::to_string(r.elements)) +
                    " elements, but data has " + std::to_string(length));
  }
}

}  // namespace

JsTensor ReadTensor(const Napi::Value& value, const TensorSpec& spec) {
  const std::string& name = spec.name;
  if (!value.IsObject() || value.IsArray() || value.IsTypedArray() || value.IsFunction()) {
    ThrowTypeError(name + ": expected an object { data: " + DtypeList(spec) + ", shape: number[] }, got " +
                   Describe(value));
  }
  Napi::Object obj = value.As<Napi::Object>();
  Napi::Value dataValue = obj.Get("data");
  if (!dataValue.IsTypedArray())
    ThrowTypeError(name + ".data: expected " + DtypeList(spec) + ", got " + Describe(dataValue));
  auto array = dataValue.As<Napi::TypedArray>();
  const ArrayKind& kind = ReadArrayKind(obj, array, spec);
  ShapeRead shape = ReadShape(obj, name);
  CheckShape(shape, spec, array.ElementLength());

  void* data = static_cast<uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
  auto n = static_cast<int64_t>(shape.elements);
  if (spec.finite) {
    if (kind.dtype == at::kFloat) CheckFinite(static_cast<const float*>(data), n, name);
    if (kind.dtype == at::kDouble) CheckFinite(static_cast<const double*>(data), n, name);
  }
  JsTensor out;
  // An empty typed array may have no memory at all; LibTorch wants a real pointer.
  out.tensor = n == 0 ? at::empty(shape.shape, at::TensorOptions().dtype(kind.dtype))
                      : at::from_blob(data, shape.shape, at::TensorOptions().dtype(kind.dtype));
  out.owner = Napi::Persistent(array.As<Napi::Object>());
  return out;
}

// V8's limits on what the addon may create (Node 20, 64-bit: v8::TypedArray::kMaxLength is 2^32
// elements; an ArrayBuffer may hold 2^53 - 1 bytes). Past them V8 aborts the process: check first.
static constexpr uint64_t kMaxTypedArrayLength = uint64_t{1} << 32;

static void CheckJsLength(const at::Tensor& t) {
  // numel() of a well-formed tensor cannot overflow; recompute with a saturating product anyway
  unsigned __int128 n = 1;
  for (int64_t d : t.sizes())
    n = std::min<unsigned __int128>(n * static_cast<uint64_t>(std::max<int64_t>(d, 0)),
                                    static_cast<unsigned __int128>(1) << 64);
  if (n > kMaxTypedArrayLength) {
    std::ostringstream s;
    s << "a result of "
      << (n >= (static_cast<unsigned __int128>(1) << 64) ? std::string("more than 2^64")
                                                         : std::to_string(static_cast<uint64_t>(n)))
      << " elements (shape " << t.sizes() << ") is larger than a JavaScript typed array may be (2^32 elements)";
    throw BoundaryError(ErrorKind::RangeError, s.str());
  }
}

at::Tensor PrepareForJs(const at::Tensor& tensor) {
  CheckJsLength(tensor);
  at::Tensor t = tensor;
  if (!t.device().is_cpu()) t = t.to(at::kCPU);
  switch (t.scalar_type()) {
    case at::kBFloat16:
    case at::kHalf:
      t = t.to(at::kFloat);
      break;
    case at::kBool:
      t = t.to(at::kByte);
      break;
    default:
      if (!HasTypedArray(t.scalar_type())) {
        throw std::runtime_error(std::string("cannot hand a ") + c10::toString(t.scalar_type()) +
                                 " tensor to JavaScript");
      }
  }
  if (t.is_conj()) t = t.resolve_conj();
  return t.contiguous();
}

Napi::Object WrapTensor(Napi::Env env, const at::Tensor& prepared) {
  const ArrayKind* kind = nullptr;
  for (const auto& k : kArrayKinds)
    if (k.dtype == prepared.scalar_type() && k.js != napi_uint8_clamped_array) kind = &k;
  if (!kind || !prepared.is_contiguous() || !prepared.device().is_cpu()) {
    throw std::logic_error("WrapTensor needs a tensor from PrepareForJs");
  }
  CheckJsLength(prepared);
  const size_t bytes = static_cast<size_t>(prepared.numel()) * prepared.element_size();
  Napi::ArrayBuffer buffer;
  if (bytes == 0) {
    buffer = Napi::ArrayBuffer::New(env, 0);
  } else {
    // The typed array views the tensor's memory; the heap tensor keeps it alive until the
    // array is collected. V8 is told about the memory so that collection keeps pace.
    auto* owner = new at::Tensor(prepared);
    buffer = Napi::ArrayBuffer::New(
        env, owner->data_ptr(), bytes,
        [](Napi::BasicEnv finalizeEnv, void*, at::Tensor* hint) {
          Napi::MemoryManagement::AdjustExternalMemory(finalizeEnv, -static_cast<int64_t>(hint->nbytes()));
          delete hint;
        },
        owner);
    Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(bytes));
  }
  const size_t length = static_cast<size_t>(prepared.numel());
  Napi::Value data;
  switch (kind->js) {
    case napi_float32_array:
      data = Napi::Float32Array::New(env, length, buffer, 0);
      break;
    case napi_float64_array:
      data = Napi::Float64Array::New(env, length, buffer, 0);
      break;
    case napi_int32_array:
      data = Napi::Int32Array::New(env, length, buffer, 0);
      break;
    case napi_bigint64_array:
      data = Napi::BigInt64Array::New(env, length, buffer, 0);
      break;
    case napi_uint8_array:
      data = Napi::Uint8Array::New(env, length, buffer, 0);
      break;
    case napi_int8_array:
      data = Napi::Int8Array::New(env, length, buffer, 0);
      break;
    case napi_int16_array:
      data = Napi::Int16Array::New(env, length, buffer, 0);
      break;
    default:
      throw std::logic_error("unreachable typed array kind");
  }
  Napi::Array shape = Napi::Array::New(env, prepared.dim());
  for (int64_t i = 0; i < prepared.dim(); ++i)
    shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(prepared.size(i))));
  Napi::Object out = Napi::Object::New(env);
  out.Set("data", data);
  out.Set("shape", shape);
  return out;
}

Napi::Object WrapNamed(Napi::Env env, const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  Napi::Object out = Napi::Object::New(env);
  for (const auto& [name, t] : tensors) out.Set(name, WrapTensor(env, t));
  return out;
}

uint64_t DataAddress(const Napi::Value& value, const std::string& name) {
  if (!value.IsTypedArray()) ThrowTypeError(name + ": expected a typed array, got " + Describe(value));
  auto array = value.As<Napi::TypedArray>();
  return reinterpret_cast<uint64_t>(static_cast<uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset());
}

Napi::Object KeyReport(Napi::Env env, const std::vector<std::string>& missing,
                       const std::vector<std::string>& unexpected) {
  Napi::Object o = Napi::Object::New(env);
  auto list = [&](const std::vector<std::string>& keys) {
    Napi::Array a = Napi::Array::New(env, keys.size());
    for (uint32_t i = 0; i < keys.size(); ++i) a.Set(i, keys[i]);
    return a;
  };
  o.Set("missing", list(missing));
  o.Set("unexpected", list(unexpected));
  return o;
}

KeyPartition PartitionKeys(const Napi::Object& dict, const std::vector<std::string>& names) {
  const std::set<std::string> expected(names.begin(), names.end());
  KeyPartition out;
  std::set<std::string> seen;
  Napi::Array keys = dict.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    std::string key = keys.Get(i).ToString().Utf8Value();
    if (expected.count(key)) {
      seen.insert(key);
      out.present.push_back(std::move(key));
    } else {
      out.unexpected.push_back(std::move(key));
    }
  }
  for (const auto& name : names)
    if (!seen.count(name)) out.missing.push_back(name);
  return out;
}

Napi::Object StateDictArgument(const Napi::CallbackInfo& info) {
  if (!info[0].IsObject() || info[0].IsArray()) ThrowTypeError("stateDict: expected an object of named tensors");
  return info[0].As<Napi::Object>();
}

bool StrictOption(const Napi::CallbackInfo& info, size_t index) {
  return ReadBool(ReadOptions(info[index], "options", "an object { strict }"), "options", "strict");
}

}  // namespace vilref
