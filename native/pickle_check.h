// A dry run of a `torch.save` pickle with the semantics of LibTorch 1.13's Unpickler, that builds
// no tensors and executes nothing. LibTorch's Unpickler trusts its input: an opcode on an empty
// stack, a MARK below the items taken, an odd SETITEMS, a huge memo index, a list that contains
// itself or 200,000 nested lists read outside its buffers, allocate without bound, leak or overflow
// the stack. This checker admits only pickles on which every step of LibTorch's Unpickler is
// defined: Python's stack discipline (no opcode takes items from below the latest MARK), a dense
// memo, containers mutated only before they are placed in another (so no cycles), nesting at most
// `maxDepth` levels, and the globals a checkpoint needs among those LibTorch allows
// (torch._utils._rebuild_tensor_v2, torch.<T>Storage, collections.OrderedDict, torch.device,
// builtins.complex). It returns every storage and tensor view the pickle describes, for the
// caller to check against the archive's records before LibTorch runs.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace vilref {

struct PickleLimits {
  size_t maxDepth = 256;  // nesting of containers, and of MARKs
};

struct StorageRef {
  std::string key;  // the record archive/data/<key>
  c10::ScalarType dtype = c10::ScalarType::Undefined;
  int64_t numel = 0;
  std::string location;
  std::string name;  // the dict key it was first stored under, when it is a value itself
};

struct TensorRef {
  size_t storage = 0;  // index into PickleSummary::storages
  int64_t offset = 0;
  std::vector<int64_t> size, stride;
  std::string name;  // the dict key it was first stored under ("" when none)
};

struct PickleSummary {
  std::vector<StorageRef> storages;
  std::vector<TensorRef> tensors;
};

// A pickle that LibTorch's Unpickler must not be given; the message starts "byte N: ".
class PickleError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

PickleSummary CheckPickle(const uint8_t* data, size_t size, const PickleLimits& limits);

}  // namespace vilref
