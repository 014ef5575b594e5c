// The boundary between JavaScript and LibTorch: typed arrays with explicit shapes in and out,
// argument checks before LibTorch sees anything, and exceptions turned into JS errors.
#pragma once

#include <napi.h>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <exception>
#include <string>
#include <utility>
#include <vector>

namespace vilref {

// Which JS error class a failure becomes.
enum class ErrorKind { Error, TypeError, RangeError };

// A failure detected by vilref's own checks; the kind picks the JS class.
class BoundaryError : public std::exception {
 public:
  BoundaryError(ErrorKind kind, std::string message) : kind_(kind), message_(std::move(message)) {}
  const char* what() const noexcept override { return message_.c_str(); }
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
  std::string message_;
};

[[noreturn]] void ThrowTypeError(const std::string& message);
// A shape as error messages write it: "[2, 3]".
std::string ShapeText(c10::IntArrayRef shape);

[[noreturn]] void ThrowRangeError(const std::string& message);

// Classifies an in-flight exception: BoundaryError keeps its kind, c10::Error gives its message
// without the C++ backtrace, any other std::exception its what(). Safe on any thread.
std::pair<ErrorKind, std::string> DescribeException(std::exception_ptr error);

// A c10::Error message with LibTorch's "INTERNAL ASSERT FAILED ... please report a bug to PyTorch"
// rewritten: what failed and where, addressed to vilref's users (other messages unchanged).
std::string WithoutInternals(const std::string& message);

Napi::Error MakeJsError(Napi::Env env, ErrorKind kind, const std::string& message);

// Runs `body` and rethrows whatever it throws as a JS exception of the right class.
template <typename Body>
auto Guard(Napi::Env env, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    auto [kind, message] = DescribeException(std::current_exception());
    throw MakeJsError(env, kind, message);
  }
}

// What an argument must be. `dims` holds the expected size per dimension, -1 for any; with
// `anyRank` the rank is free too. `finite` rejects NaN and ±Inf in floating-point data.
struct TensorSpec {
  std::string name;
  std::vector<at::ScalarType> dtypes;
  std::vector<int64_t> dims;
  bool anyRank = false;
  bool finite = false;
};

// A tensor viewing the memory of a JS typed array (zero-copy), with a reference that keeps the
// array alive. Create and destroy on the main thread; the tensor may be used on a worker thread
// while the owner lives. Copy the tensor before keeping it past the call.
struct JsTensor {
  at::Tensor tensor;
  Napi::ObjectReference owner;
};

// Reads `{ data: TypedArray, shape: number[] }`, checking type, dtype, shape, length and values.
JsTensor ReadTensor(const Napi::Value& value, const TensorSpec& spec);

// Reads a plain JS number that must be an integer in [lo, hi].
int64_t ReadInteger(const Napi::Value& value, const std::string& name, int64_t lo, int64_t hi);

// ---- options: strict readers of the complete objects lib/ hands over ----
// TypeScript's schemas (lib/config/options.ts) own every default and every check a user sees, and
// a native class takes the complete, validated object. These readers take obj[key] as it is: a
// missing key or a wrong type is a TypeError naming `prefix.key`. Their bounds are guards that
// keep a direct addon call from dividing by zero or allocating absurdly (a RangeError); they are
// never narrower than the schemas'.

// `value` as an options object, or a TypeError naming `name` (which the message describes).
Napi::Object ReadOptions(const Napi::Value& value, const std::string& name, const std::string& expected);
bool ReadBool(const Napi::Object& obj, const std::string& prefix, const char* key);
// A finite number in [lo, hi].
double ReadNumber(const Napi::Object& obj, const std::string& prefix, const char* key, double lo, double hi);
double ReadNumberValue(const Napi::Value& value, const std::string& name, double lo, double hi);
int64_t ReadInt(const Napi::Object& obj, const std::string& prefix, const char* key, int64_t lo, int64_t hi);
// A seed: an integer in [0, 2^53 − 1].
uint64_t ReadSeed(const Napi::Object& obj, const std::string& prefix, const char* key);
std::string ReadString(const Napi::Object& obj, const std::string& prefix, const char* key);
// An array of integers, each in [lo, hi].
std::vector<int64_t> ReadIntArray(const Napi::Object& obj, const std::string& prefix, const char* key, int64_t lo,
                                  int64_t hi);
// One of the strings in `allowed` (a RangeError for another string).
std::string ReadEnumName(const Napi::Object& obj, const std::string& prefix, const char* key,
                         const std::vector<std::string>& allowed);
std::string ReadEnumValue(const Napi::Value& value, const std::string& name, const std::vector<std::string>& allowed);
// ReadEnumName mapped through `values`.
template <typename T>
T ReadEnum(const Napi::Object& obj, const std::string& prefix, const char* key,
           const std::vector<std::pair<std::string, T>>& values) {
  std::vector<std::string> names;
  for (const auto& v : values) names.push_back(v.first);
  const std::string name = ReadEnumName(obj, prefix, key, names);
  for (const auto& v : values)
    if (v.first == name) return v.second;
  return values.front().second;  // unreachable: ReadEnumName throws first
}

// The floating-point dtypes by the names options give them: "float32", "bfloat16", "float16".
at::ScalarType FloatDtype(const std::string& name);
const char* FloatDtypeName(at::ScalarType dtype);
const std::vector<std::string>& FloatDtypeNames();

// Makes a tensor ready for JS on the worker thread: to CPU, contiguous, and a dtype that has a
// typed array (bfloat16/float16 become float32, bool becomes uint8). No copy when already so.
at::Tensor PrepareForJs(const at::Tensor& tensor);

// Wraps a prepared tensor as `{ data, shape }` without copying: the typed array's memory is the
// tensor's, and a finalizer releases the tensor when the array is collected. Main thread only.
Napi::Object WrapTensor(Napi::Env env, const at::Tensor& prepared);

// { name: {data, shape} } for prepared tensors (a state dict), without copying. Main thread only.
Napi::Object WrapNamed(Napi::Env env, const std::vector<std::pair<std::string, at::Tensor>>& tensors);

// The keys of a state dict against the names a module expects: present (in the dict's order),
// missing (in `names`' order) and unexpected.
struct KeyPartition {
  std::vector<std::string> present, missing, unexpected;
};
KeyPartition PartitionKeys(const Napi::Object& dict, const std::vector<std::string>& names);

// loadStateDict's first argument, `{ name: {data, shape} }`: a TypeError unless it is a plain object.
Napi::Object StateDictArgument(const Napi::CallbackInfo& info);

// loadStateDict's `{ strict }` option at info[index] (a complete options object).
bool StrictOption(const Napi::CallbackInfo& info, size_t index);

// { missing: string[], unexpected: string[] }: what a loadStateDict call reports back.
Napi::Object KeyReport(Napi::Env env, const std::vector<std::string>& missing,
                       const std::vector<std::string>& unexpected);

// The address of a typed array's first element (diagnostics: proves zero-copy in tests).
uint64_t DataAddress(const Napi::Value& value, const std::string& name);

const char* TypedArrayName(at::ScalarType dtype);
bool HasTypedArray(at::ScalarType dtype);

}  // namespace vilref
