#include "pickle_check.h"

#include <algorithm>
#include <cstring>

namespace vilref {

namespace {

enum class Kind : uint8_t {
  None,
  Bool,
  Int,
  Float,
  Str,
  Tuple,
  List,
  Dict,
  Callable,
  ScalarType,
  Storage,
  Tensor,
  Leaf
};
enum class Callable : uint8_t { RebuildTensor, OrderedDict, Device, Complex };

const char* KindName(Kind k) {
  static const char* names[] = {"None", "bool",     "int",   "float",   "str",    "tuple", "list",
                                "dict", "callable", "dtype", "storage", "tensor", "object"};
  return names[static_cast<int>(k)];
}

// "a list", "an int".
std::string A(Kind k) {
  std::string name = KindName(k);
  return (name[0] == 'i' || name[0] == 'o' ? "an " : "a ") + name;
}

struct Node {
  Kind kind = Kind::None;
  bool parented = false;  // placed in a container: frozen from then on
  uint32_t height = 0;    // nesting below it
  int64_t i = 0;          // Int/Bool value, Callable, ScalarType, storage or tensor index
  double f = 0;
  std::string s;                // Str
  std::vector<uint32_t> items;  // Tuple elements
};

// The storage classes LibTorch resolves (AT_FORALL_SCALAR_TYPES_WITH_COMPLEX_AND_QINTS) that vilref
// can hand to JavaScript; the others (complex, quantized) are refused by name.
struct StorageClass {
  const char* name;
  c10::ScalarType dtype;
};
constexpr StorageClass kStorages[] = {
    {"FloatStorage", c10::ScalarType::Float}, {"DoubleStorage", c10::ScalarType::Double},
    {"HalfStorage", c10::ScalarType::Half},   {"BFloat16Storage", c10::ScalarType::BFloat16},
    {"LongStorage", c10::ScalarType::Long},   {"IntStorage", c10::ScalarType::Int},
    {"ShortStorage", c10::ScalarType::Short}, {"CharStorage", c10::ScalarType::Char},
    {"ByteStorage", c10::ScalarType::Byte},   {"BoolStorage", c10::ScalarType::Bool},
};

bool IsIdChar(char c) {
  return c == '_' || c == '.' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// "cpu", "cuda" or "cuda:N": where the storage lived when saved (it is read to the CPU).
bool ValidLocation(const std::string& s) {
  if (s == "cpu" || s == "cuda") return true;
  if (s.rfind("cuda:", 0) != 0 || s.size() < 6 || s.size() > 8) return false;
  return std::all_of(s.begin() + 5, s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

class Checker {
 public:
  Checker(const uint8_t* data, size_t size, const PickleLimits& limits) : p_(data), n_(size), limits_(limits) {}
  PickleSummary Run();

 private:
  [[noreturn]] void Fail(const std::string& message) const {
    throw PickleError("byte " + std::to_string(op_) + ": " + message);
  }
  const uint8_t* Take(size_t count);
  uint32_t U32() {
    const uint8_t* b = Take(4);
    return b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  }
  std::string Line(const char* what);

  uint32_t Add(Node node);
  void Push(uint32_t id) { stack_.push_back(id); }
  size_t Floor() const { return marks_.empty() ? 0 : marks_.back(); }
  void Need(size_t count, const char* op) const;
  uint32_t Pop() {
    uint32_t id = stack_.back();
    stack_.pop_back();
    return id;
  }
  size_t PopMark(const char* op);
  Node& At(uint32_t id) { return nodes_[id]; }
  void Place(uint32_t container, uint32_t item);
  void Target(uint32_t target, Kind kind, const char* op);
  void Name(uint32_t key, uint32_t value);

  bool Step(uint8_t code);
  bool Scalars(uint8_t code);
  bool Containers(uint8_t code);
  bool Memo(uint8_t code);
  void Global();
  void Reduce(const char* op);
  void RebuildTensor(const Node& args);
  void PersistentId();
  uint32_t MakeContainer(Kind kind, size_t from, const char* op);
  void AddItems(uint32_t target, size_t from, bool pairs);

  const uint8_t* p_;
  size_t n_, pos_ = 0, op_ = 0;
  PickleLimits limits_;
  std::vector<Node> nodes_;
  std::vector<uint32_t> stack_, memo_;
  std::vector<size_t> marks_;
  PickleSummary out_;
};

const uint8_t* Checker::Take(size_t count) {
  if (count > n_ - pos_) Fail("the pickle ends in the middle of an opcode's argument");
  const uint8_t* b = p_ + pos_;
  pos_ += count;
  return b;
}

std::string Checker::Line(const char* what) {
  const void* nl = std::memchr(p_ + pos_, '\n', std::min<size_t>(n_ - pos_, 257));
  if (!nl) Fail(std::string("GLOBAL's ") + what + " is not a newline-terminated name of at most 256 characters");
  size_t len = static_cast<const uint8_t*>(nl) - (p_ + pos_);
  std::string s(reinterpret_cast<const char*>(p_ + pos_), len);
  pos_ += len + 1;
  if (s.empty() || !std::all_of(s.begin(), s.end(), IsIdChar))
    Fail(std::string("GLOBAL's ") + what + " is not a Python identifier");
  return s;
}

uint32_t Checker::Add(Node node) {
  nodes_.push_back(std::move(node));
  return static_cast<uint32_t>(nodes_.size() - 1);
}

void Checker::Need(size_t count, const char* op) const {
  if (stack_.size() - Floor() < count)
    Fail(std::string(op) + " needs " + std::to_string(count) + " item(s) above the latest MARK, there are " +
         std::to_string(stack_.size() - Floor()));
}

size_t Checker::PopMark(const char* op) {
  if (marks_.empty()) Fail(std::string(op) + " without a MARK");
  size_t mark = marks_.back();
  marks_.pop_back();
  return mark;
}

// Puts `item` into `container`: the item is frozen, the container's height grows.
void Checker::Place(uint32_t container, uint32_t item) {
  if (container == item) Fail(A(At(container).kind) + " that contains itself");
  Node& c = At(container);
  Node& it = At(item);
  it.parented = true;
  c.height = std::max(c.height, it.height + 1);
  if (c.height > limits_.maxDepth)
    Fail("containers nested deeper than " + std::to_string(limits_.maxDepth) + " levels");
}

// The container APPENDS/SETITEMS add to: the right kind, and not yet inside another container.
void Checker::Target(uint32_t target, Kind kind, const char* op) {
  const Node& t = At(target);
  if (t.kind != kind)
    Fail(std::string(op) + " on " + A(t.kind) + ", not " + A(kind) +
         (t.kind == Kind::None ? " (LibTorch's OrderedDict is None until it is filled; it cannot be)" : ""));
  if (t.parented) Fail(std::string(op) + " on " + A(kind) + " already placed in another container");
}

void Checker::Name(uint32_t key, uint32_t value) {
  const Node& k = At(key);
  if (k.kind != Kind::Str && k.kind != Kind::Int && k.kind != Kind::Bool && k.kind != Kind::Float &&
      k.kind != Kind::None)
    Fail("a dict key that is " + A(k.kind) + " (keys are str, int, float, bool or None)");
  const Node& v = At(value);
  if (k.kind != Kind::Str) return;
  if (v.kind == Kind::Tensor && out_.tensors[v.i].name.empty()) out_.tensors[v.i].name = k.s;
  if (v.kind == Kind::Storage && out_.storages[v.i].name.empty()) out_.storages[v.i].name = k.s;
}

void Checker::AddItems(uint32_t target, size_t from, bool pairs) {
  if (pairs && (stack_.size() - from) % 2 != 0) Fail("an odd number of items for a dict's keys and values");
  for (size_t i = from; i < stack_.size(); ++i) {
    if (pairs && (i - from) % 2 == 0) Name(stack_[i], stack_[i + 1]);
    Place(target, stack_[i]);
  }
  stack_.resize(from);
}

uint32_t Checker::MakeContainer(Kind kind, size_t from, const char* op) {
  Node node;
  node.kind = kind;
  if (kind == Kind::Tuple) node.items.assign(stack_.begin() + from, stack_.end());
  uint32_t id = Add(std::move(node));
  AddItems(id, from, kind == Kind::Dict);
  return id;
}

bool Checker::Scalars(uint8_t code) {
  Node node;
  switch (code) {
    case 0x4e:  // NONE
      break;
    case 0x88:  // NEWTRUE
    case 0x89:  // NEWFALSE
      node.kind = Kind::Bool, node.i = code == 0x88;
      break;
    case 0x4b:  // BININT1
      node.kind = Kind::Int, node.i = *Take(1);
      break;
    case 0x4d: {  // BININT2
      const uint8_t* b = Take(2);
      node.kind = Kind::Int, node.i = b[0] | (b[1] << 8);
      break;
    }
    case 0x4a:  // BININT
      node.kind = Kind::Int, node.i = static_cast<int32_t>(U32());
      break;
    case 0x8a: {  // LONG1
      uint8_t len = *Take(1);
      if (len != 8) Fail("LONG1 of " + std::to_string(len) + " bytes (LibTorch reads only 8-byte LONG1)");
      uint64_t v = 0;
      const uint8_t* b = Take(8);
      for (int k = 7; k >= 0; --k) v = (v << 8) | b[k];
      node.kind = Kind::Int, node.i = static_cast<int64_t>(v);
      break;
    }
    case 0x47:  // BINFLOAT (big-endian)
      Take(8);
      node.kind = Kind::Float;
      break;
    case 0x58: {  // BINUNICODE
      uint32_t len = U32();
      const uint8_t* b = Take(len);
      node.kind = Kind::Str, node.s.assign(reinterpret_cast<const char*>(b), len);
      break;
    }
    default:
      return false;
  }
  Push(Add(std::move(node)));
  return true;
}

bool Checker::Containers(uint8_t code) {
  switch (code) {
    case 0x28:  // MARK
      if (marks_.size() >= limits_.maxDepth) Fail("MARKs nested deeper than " + std::to_string(limits_.maxDepth));
      marks_.push_back(stack_.size());
      return true;
    case 0x5d:  // EMPTY_LIST
    case 0x7d:  // EMPTY_DICT
    case 0x29:  // EMPTY_TUPLE
      Push(MakeContainer(code == 0x5d ? Kind::List : code == 0x7d ? Kind::Dict : Kind::Tuple, stack_.size(), ""));
      return true;
    case 0x74:    // TUPLE
    case 0x6c:    // LIST
    case 0x64: {  // DICT
      const char* op = code == 0x74 ? "TUPLE" : code == 0x6c ? "LIST" : "DICT";
      size_t from = PopMark(op);
      Push(MakeContainer(code == 0x74 ? Kind::Tuple : code == 0x6c ? Kind::List : Kind::Dict, from, op));
      return true;
    }
    case 0x85:  // TUPLE1..3
    case 0x86:
    case 0x87: {
      size_t count = code - 0x84;
      Need(count, "TUPLEn");
      Push(MakeContainer(Kind::Tuple, stack_.size() - count, "TUPLEn"));
      return true;
    }
    case 0x65:    // APPENDS
    case 0x75: {  // SETITEMS
      const char* op = code == 0x65 ? "APPENDS" : "SETITEMS";
      size_t from = PopMark(op);
      if (from <= Floor()) Fail(std::string(op) + " with nothing beneath its MARK");
      uint32_t target = stack_[from - 1];
      Target(target, code == 0x65 ? Kind::List : Kind::Dict, op);
      AddItems(target, from, code == 0x75);
      return true;
    }
    default:
      return false;
  }
}

bool Checker::Memo(uint8_t code) {
  switch (code) {
    case 0x71:    // BINPUT
    case 0x72: {  // LONG_BINPUT
      size_t id = code == 0x71 ? *Take(1) : U32();
      Need(1, "BINPUT");
      if (id > memo_.size())
        Fail("memo index " + std::to_string(id) + " skips ahead of the " + std::to_string(memo_.size()) + " stored");
      if (id == memo_.size())
        memo_.push_back(stack_.back());
      else
        memo_[id] = stack_.back();
      return true;
    }
    case 0x68:    // BINGET
    case 0x6a: {  // LONG_BINGET
      size_t id = code == 0x68 ? *Take(1) : U32();
      if (id >= memo_.size()) Fail("memo index " + std::to_string(id) + " was never stored");
      Push(memo_[id]);
      return true;
    }
    default:
      return false;
  }
}

void Checker::Global() {
  std::string module = Line("module"), name = Line("name");
  Node node;
  node.kind = Kind::Callable;
  if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
    node.i = static_cast<int>(Callable::RebuildTensor);
  } else if (module == "collections" && name == "OrderedDict") {
    node.i = static_cast<int>(Callable::OrderedDict);
  } else if (module == "torch" && name == "device") {
    node.i = static_cast<int>(Callable::Device);
  } else if (module == "builtins" && name == "complex") {
    node.i = static_cast<int>(Callable::Complex);
  } else if (module == "torch" && name.size() > 7 && name.compare(name.size() - 7, 7, "Storage") == 0) {
    auto it =
        std::find_if(std::begin(kStorages), std::end(kStorages), [&](const StorageClass& s) { return name == s.name; });
    if (it == std::end(kStorages)) Fail("storage type torch." + name + " is not supported");
    node.kind = Kind::ScalarType;
    node.i = static_cast<int>(it->dtype);
  } else {
    Fail("global " + module + "." + name +
         " is not allowed (a checkpoint may name only tensors, storages and plain containers)");
  }
  Push(Add(std::move(node)));
}

void Checker::PersistentId() {
  Need(1, "BINPERSID");
  const Node& t = At(Pop());
  auto is = [&](size_t i, Kind k) { return At(t.items[i]).kind == k; };
  if (t.kind != Kind::Tuple || t.items.size() != 5 || !is(0, Kind::Str) || At(t.items[0]).s != "storage" ||
      !is(1, Kind::ScalarType) || !is(2, Kind::Str) || !is(3, Kind::Str) || !is(4, Kind::Int))
    Fail("a persistent id that is not ('storage', torch.<T>Storage, key, location, numel)");
  StorageRef s;
  s.dtype = static_cast<c10::ScalarType>(At(t.items[1]).i);
  s.key = At(t.items[2]).s;
  s.location = At(t.items[3]).s;
  s.numel = At(t.items[4]).i;
  if (!ValidLocation(s.location)) Fail("storage \"" + s.key.substr(0, 100) + "\": unknown location");
  if (s.numel < 0) Fail("storage \"" + s.key.substr(0, 100) + "\": negative element count");
  Node node;
  node.kind = Kind::Storage;
  node.i = static_cast<int64_t>(out_.storages.size());
  out_.storages.push_back(std::move(s));
  Push(Add(std::move(node)));
}

void Checker::RebuildTensor(const Node& args) {
  auto kind = [&](size_t i) { return At(args.items[i]).kind; };
  auto ints = [&](size_t i, std::vector<int64_t>& out) {
    if (kind(i) != Kind::Tuple) return false;
    for (uint32_t id : At(args.items[i]).items) {
      if (At(id).kind != Kind::Int) return false;
      out.push_back(At(id).i);
    }
    return true;
  };
  TensorRef t;
  if (args.kind != Kind::Tuple || args.items.size() < 5 || args.items.size() > 7 || kind(0) != Kind::Storage ||
      kind(1) != Kind::Int || !ints(2, t.size) || !ints(3, t.stride) || kind(4) != Kind::Bool)
    Fail("_rebuild_tensor_v2 wants (storage, offset, size, stride, requires_grad, hooks[, metadata])");
  t.storage = static_cast<size_t>(At(args.items[0]).i);
  t.offset = At(args.items[1]).i;
  Node node;
  node.kind = Kind::Tensor;
  node.i = static_cast<int64_t>(out_.tensors.size());
  out_.tensors.push_back(std::move(t));
  Push(Add(std::move(node)));
}

// REDUCE (and BUILD, which LibTorch 1.13 runs the same way): callable, argument → result.
void Checker::Reduce(const char* op) {
  Need(2, op);
  uint32_t argId = Pop(), fnId = Pop();
  const Node& fn = At(fnId);
  if (fn.kind != Kind::Callable)
    Fail(std::string(op) + " on " + A(fn.kind) + ", which LibTorch cannot call" +
         (std::string(op) == "BUILD" ? " (LibTorch 1.13 cannot set an object's state)" : ""));
  const Node& arg = At(argId);
  switch (static_cast<Callable>(fn.i)) {
    case Callable::RebuildTensor:
      return RebuildTensor(arg);
    case Callable::OrderedDict:  // LibTorch: None (the argument is dropped)
      Push(Add(Node{}));
      return;
    case Callable::Device:
      if (arg.kind != Kind::Tuple || arg.items.empty() || At(arg.items[0]).kind != Kind::Str ||
          !ValidLocation(At(arg.items[0]).s))
        Fail("torch.device wants (\"cpu\" | \"cuda\" | \"cuda:N\",)");
      break;
    case Callable::Complex:
      if (arg.kind != Kind::Tuple || arg.items.size() != 2 || At(arg.items[0]).kind != Kind::Float ||
          At(arg.items[1]).kind != Kind::Float)
        Fail("complex wants (float, float)");
      break;
  }
  Node leaf;
  leaf.kind = Kind::Leaf;
  Push(Add(std::move(leaf)));
}

bool Checker::Step(uint8_t code) {
  if (Scalars(code) || Containers(code) || Memo(code)) return true;
  switch (code) {
    case 0x63:  // GLOBAL
      Global();
      return true;
    case 0x52:  // REDUCE
    case 0x62:  // BUILD
      Reduce(code == 0x52 ? "REDUCE" : "BUILD");
      return true;
    case 0x51:  // BINPERSID
      PersistentId();
      return true;
    case 0x2e:  // STOP
      if (stack_.size() != 1 || !marks_.empty())
        Fail("STOP with " + std::to_string(stack_.size()) + " items and " + std::to_string(marks_.size()) +
             " open MARKs (want 1 and 0)");
      return false;
    case 0x61:
    case 0x73: {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", code);
      Fail(std::string(code == 0x61 ? "APPEND" : "SETITEM") + " (" + hex +
           ") is not read by LibTorch 1.13's unpickler (single-item lists and dicts)");
    }
    default: {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", code);
      Fail(std::string("opcode ") + hex + " is not one LibTorch's unpickler reads");
    }
  }
}

PickleSummary Checker::Run() {
  if (n_ < 2 || p_[0] != 0x80) Fail("not a pickle (no PROTO opcode at the start)");
  if (p_[1] != 2) Fail("pickle protocol " + std::to_string(p_[1]) + " (LibTorch reads protocol 2)");
  pos_ = 2;
  for (;;) {
    op_ = pos_;
    if (pos_ >= n_) Fail("the pickle ends without STOP");
    if (!Step(*Take(1))) break;
  }
  return std::move(out_);
}

}  // namespace

PickleSummary CheckPickle(const uint8_t* data, size_t size, const PickleLimits& limits) {
  return Checker(data, size, limits).Run();
}

}  // namespace vilref
