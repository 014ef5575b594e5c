#include "torch_zip.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#ifdef VILREF_WITH_ZLIB
#include <zlib.h>
#endif

namespace vilref {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50;
constexpr uint32_t kEnd64Sig = 0x06064b50, kLocator64Sig = 0x07064b50;
constexpr size_t kLocalSize = 30, kCentralSize = 46, kEndSize = 22, kLocator64Size = 20, kEnd64Size = 56;

struct CrcTables {
  uint32_t t[8][256];
  CrcTables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (int k = 1; k < 8; ++k)
      for (uint32_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
  }
};

const CrcTables& Tables() {
  static const CrcTables tables;
  return tables;
}

[[noreturn]] void Fail(const std::string& message) { throw std::runtime_error(message); }

uint16_t U16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t U32(const uint8_t* p) { return static_cast<uint32_t>(U16(p)) | (static_cast<uint32_t>(U16(p + 2)) << 16); }
uint64_t U64(const uint8_t* p) { return static_cast<uint64_t>(U32(p)) | (static_cast<uint64_t>(U32(p + 4)) << 32); }

std::string Quote(const std::string& name) {
  std::string out = "\"";
  for (unsigned char c : name.substr(0, 200)) {
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + (name.size() > 200 ? "...\"" : "\"");
}

// [offset, offset + length) inside [0, size), overflow-safe.
bool Inside(uint64_t offset, uint64_t length, uint64_t size) { return offset <= size && length <= size - offset; }

// The ZIP64 extended-information extra field: replaces the 32-bit values that are saturated.
void ReadZip64Extra(const uint8_t* extra, size_t length, ZipEntry& e, bool sizeSat, bool compSat, bool offSat,
                    bool diskSat) {
  size_t pos = 0;
  while (pos < length) {
    if (length - pos < 4) Fail("entry " + Quote(e.name) + ": a truncated extra field");
    uint16_t id = U16(extra + pos), len = U16(extra + pos + 2);
    if (length - pos - 4 < len) Fail("entry " + Quote(e.name) + ": an extra field runs past its header");
    if (id == 0x0001) {
      const uint8_t* f = extra + pos + 4;
      size_t need = 8 * (sizeSat + compSat + offSat) + 4 * diskSat, at = 0;
      if (len < need) Fail("entry " + Quote(e.name) + ": the ZIP64 extra field is too short");
      if (sizeSat) e.size = U64(f + at), at += 8;
      if (compSat) e.compressedSize = U64(f + at), at += 8;
      if (offSat) e.headerOffset = U64(f + at), at += 8;
      if (diskSat && U32(f + at) != 0) Fail("entry " + Quote(e.name) + ": multi-disk archives are not supported");
      sizeSat = compSat = offSat = diskSat = false;
    }
    pos += 4 + len;
  }
  if (sizeSat || compSat || offSat || diskSat)
    Fail("entry " + Quote(e.name) + ": sizes marked ZIP64 but no ZIP64 extra field");
}

}  // namespace

uint32_t Crc32(const uint8_t* p, size_t n, uint32_t crc) {
  const auto& T = Tables().t;
  crc = ~crc;
  while (n >= 8) {
    uint32_t lo = U32(p) ^ crc, hi = U32(p + 4);
    crc = T[7][lo & 0xff] ^ T[6][(lo >> 8) & 0xff] ^ T[5][(lo >> 16) & 0xff] ^ T[4][lo >> 24] ^ T[3][hi & 0xff] ^
          T[2][(hi >> 8) & 0xff] ^ T[1][(hi >> 16) & 0xff] ^ T[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) crc = T[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

ZipArchive::ZipArchive(const uint8_t* data, size_t size, const ZipLimits& limits)
    : data_(data), size_(size), limits_(limits) {
  if (size < kEndSize) Fail(std::to_string(size) + " bytes is too short for a ZIP archive");
  // The end record: the last signature whose comment length reaches exactly to the end of the file.
  uint64_t end = 0;
  bool found = false;
  uint64_t lowest = size > kEndSize + 0xffff ? size - kEndSize - 0xffff : 0;
  for (uint64_t pos = size - kEndSize + 1; pos-- > lowest;) {
    if (U32(data + pos) == kEndSig && pos + kEndSize + U16(data + pos + 20) == size) {
      end = pos;
      found = true;
      break;
    }
  }
  if (!found) Fail("no ZIP end-of-central-directory record (not a ZIP archive, or truncated)");
  const uint8_t* e = data + end;
  if (U16(e + 4) != 0 || U16(e + 6) != 0) Fail("multi-disk ZIP archives are not supported");
  uint64_t count = U16(e + 10), cdSize = U32(e + 12), cdOffset = U32(e + 16), cdEnd = end;
  if (U16(e + 8) != U16(e + 10)) Fail("the end record's entry counts disagree");
  if (end >= kLocator64Size && U32(data + end - kLocator64Size) == kLocator64Sig) {
    const uint8_t* loc = data + end - kLocator64Size;
    uint64_t at = U64(loc + 8);
    if (U32(loc + 4) != 0 || U32(loc + 16) > 1) Fail("multi-disk ZIP archives are not supported");
    if (!Inside(at, kEnd64Size, end - kLocator64Size) || U32(data + at) != kEnd64Sig)
      Fail("the ZIP64 locator points to no ZIP64 end record");
    const uint8_t* z = data + at;
    if (U32(z + 16) != 0 || U32(z + 20) != 0 || U64(z + 24) != U64(z + 32))
      Fail("multi-disk ZIP archives are not supported");
    count = U64(z + 32), cdSize = U64(z + 40), cdOffset = U64(z + 48), cdEnd = at;
  }
  if (!Inside(cdOffset, cdSize, cdEnd) || cdOffset + cdSize != cdEnd)
    Fail("the central directory [" + std::to_string(cdOffset) + ", +" + std::to_string(cdSize) +
         ") does not end where the end record starts (" + std::to_string(cdEnd) + ")");
  if (count > cdSize / kCentralSize) Fail(std::to_string(count) + " entries do not fit the central directory");
  ReadDirectory(cdOffset, cdSize, count, cdEnd);
  CheckLayout(cdOffset);
}

void ZipArchive::ReadDirectory(uint64_t cdOffset, uint64_t cdSize, uint64_t count, uint64_t cdEnd) {
  uint64_t pos = cdOffset, total = 0;
  for (uint64_t i = 0; i < count; ++i) {
    if (!Inside(pos, kCentralSize, cdEnd) || U32(data_ + pos) != kCentralSig)
      Fail("central directory entry " + std::to_string(i) + " is malformed");
    const uint8_t* c = data_ + pos;
    uint16_t flags = U16(c + 8), nameLen = U16(c + 28), extraLen = U16(c + 30), commentLen = U16(c + 32);
    if (!Inside(pos + kCentralSize, uint64_t{nameLen} + extraLen + commentLen, cdEnd))
      Fail("central directory entry " + std::to_string(i) + " runs past the directory");
    ZipEntry e;
    e.name.assign(reinterpret_cast<const char*>(c + kCentralSize), nameLen);
    e.method = U16(c + 10);
    e.crc = U32(c + 16);
    e.compressedSize = U32(c + 20);
    e.size = U32(c + 24);
    e.headerOffset = U32(c + 42);
    ReadZip64Extra(c + kCentralSize + nameLen, extraLen, e, e.size == 0xffffffffu, e.compressedSize == 0xffffffffu,
                   e.headerOffset == 0xffffffffu, U16(c + 34) == 0xffff);
    if (!(U16(c + 34) == 0 || U16(c + 34) == 0xffff)) Fail("entry " + Quote(e.name) + ": on another disk");
    if (e.name.empty() || e.name.find('\0') != std::string::npos) Fail("an entry with an empty or NUL-holding name");
    if (flags & 0x41) Fail("entry " + Quote(e.name) + " is encrypted");
    if (e.method != 0 && e.method != 8)
      Fail("entry " + Quote(e.name) + " uses compression method " + std::to_string(e.method) +
           " (only stored and deflated are read)");
    if (e.method == 0 && e.compressedSize != e.size)
      Fail("entry " + Quote(e.name) + " is stored but its sizes differ (" + std::to_string(e.compressedSize) + " vs " +
           std::to_string(e.size) + ")");
    if (e.size > limits_.maxEntryBytes)
      Fail("entry " + Quote(e.name) + " declares " + std::to_string(e.size) +
           " uncompressed bytes, more than the limit of " + std::to_string(limits_.maxEntryBytes) + " per entry");
    total += e.size;
    if (total > limits_.maxTotalBytes)
      Fail("the entries up to " + Quote(e.name) + " declare " + std::to_string(total) +
           " uncompressed bytes, more than the limit of " + std::to_string(limits_.maxTotalBytes));
    if (!index_.emplace(e.name, entries_.size()).second) Fail("entry " + Quote(e.name) + " appears twice");
    CheckLocalHeader(e, flags);
    entries_.push_back(std::move(e));
    pos += kCentralSize + nameLen + extraLen + commentLen;
  }
  if (pos != cdOffset + cdSize) Fail("the central directory holds bytes after its last entry");
}

void ZipArchive::CheckLocalHeader(ZipEntry& e, uint16_t flags) const {
  if (!Inside(e.headerOffset, kLocalSize, size_) || U32(data_ + e.headerOffset) != kLocalSig)
    Fail("entry " + Quote(e.name) + ": no local header at offset " + std::to_string(e.headerOffset));
  const uint8_t* l = data_ + e.headerOffset;
  uint16_t nameLen = U16(l + 26), extraLen = U16(l + 28);
  if (!Inside(e.headerOffset + kLocalSize, uint64_t{nameLen} + extraLen, size_))
    Fail("entry " + Quote(e.name) + ": its local header runs past the end of the file");
  std::string name(reinterpret_cast<const char*>(l + kLocalSize), nameLen);
  if (name != e.name) Fail("entry " + Quote(e.name) + ": its local header names " + Quote(name));
  if (U16(l + 8) != e.method || ((U16(l + 6) ^ flags) & 0x49))
    Fail("entry " + Quote(e.name) + ": its local header disagrees with the central directory");
  if (!(flags & 0x08)) {
    uint32_t comp = U32(l + 18), size = U32(l + 22);
    bool sizesOk = (comp == e.compressedSize || comp == 0xffffffffu) && (size == e.size || size == 0xffffffffu);
    if (U32(l + 14) != e.crc || !sizesOk)
      Fail("entry " + Quote(e.name) + ": its local header's CRC or sizes disagree with the central directory");
  }
  e.dataOffset = e.headerOffset + kLocalSize + nameLen + extraLen;
}

void ZipArchive::CheckLayout(uint64_t cdOffset) {
  std::vector<const ZipEntry*> order;
  for (const auto& e : entries_) order.push_back(&e);
  std::sort(order.begin(), order.end(),
            [](const ZipEntry* a, const ZipEntry* b) { return a->headerOffset < b->headerOffset; });
  uint64_t cursor = 0;
  const ZipEntry* prev = nullptr;
  for (const ZipEntry* e : order) {
    if (e->headerOffset < cursor)
      Fail("entries " + Quote(prev->name) + " and " + Quote(e->name) + " overlap in the archive");
    if (!Inside(e->dataOffset, e->compressedSize, cdOffset))
      Fail("entry " + Quote(e->name) + ": its " + std::to_string(e->compressedSize) + " bytes at offset " +
           std::to_string(e->dataOffset) + " run past the start of the central directory (" + std::to_string(cdOffset) +
           ")");
    cursor = e->dataOffset + e->compressedSize;
    prev = e;
  }
}

const ZipEntry* ZipArchive::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

namespace {

std::shared_ptr<uint8_t> Allocate(size_t size) {
  return std::shared_ptr<uint8_t>(new uint8_t[size == 0 ? 1 : size], std::default_delete<uint8_t[]>());
}

}  // namespace

std::shared_ptr<uint8_t> ZipArchive::Inflate(const ZipEntry& e) const {
#ifdef VILREF_WITH_ZLIB
  auto out = Allocate(static_cast<size_t>(e.size));
  z_stream z{};
  if (inflateInit2(&z, -15) != Z_OK) Fail("entry " + Quote(e.name) + ": zlib could not start");
  const uint8_t* in = data_ + e.dataOffset;
  uint64_t inDone = 0, outDone = 0;
  uint8_t probe = 0;
  std::string problem;
  for (;;) {
    // zlib counts in 32 bits: feed and drain in slices; past the declared size, a 1-byte probe
    bool probing = outDone == e.size;
    z.next_in = const_cast<Bytef*>(in + inDone);
    z.avail_in = static_cast<uInt>(std::min<uint64_t>(e.compressedSize - inDone, 1u << 30));
    z.next_out = probing ? &probe : out.get() + outDone;
    z.avail_out = probing ? 1 : static_cast<uInt>(std::min<uint64_t>(e.size - outDone, 1u << 30));
    const uInt inBefore = z.avail_in, outBefore = z.avail_out;
    int rc = inflate(&z, Z_NO_FLUSH);
    const uint64_t consumed = inBefore - z.avail_in, produced = outBefore - z.avail_out;
    inDone += consumed;
    if (probing && produced > 0) {
      problem = "inflates to more than its declared " + std::to_string(e.size) + " bytes";
      break;
    }
    outDone += produced;
    if (rc == Z_STREAM_END) break;
    if ((rc != Z_OK && rc != Z_BUF_ERROR) || (consumed == 0 && produced == 0)) {
      problem = std::string("holds corrupt or truncated deflate data") + (z.msg ? std::string(" (") + z.msg + ")" : "");
      break;
    }
  }
  inflateEnd(&z);
  if (!problem.empty()) Fail("entry " + Quote(e.name) + " " + problem);
  if (outDone != e.size)
    Fail("entry " + Quote(e.name) + " inflates to " + std::to_string(outDone) + " bytes, not the declared " +
         std::to_string(e.size));
  if (inDone != e.compressedSize) Fail("entry " + Quote(e.name) + " holds bytes after the end of its deflate stream");
  return out;
#else
  Fail("entry " + Quote(e.name) + " is deflated, and this build of vilref has no zlib (rebuild with zlib1g-dev)");
#endif
}

EntryBytes ZipArchive::Read(const ZipEntry& e, bool copy) const {
  EntryBytes out;
  out.size = static_cast<size_t>(e.size);
  if (e.method == 8) {
    out.owner = Inflate(e);
  } else if (copy) {
    out.owner = Allocate(out.size);
    if (out.size) std::memcpy(out.owner.get(), data_ + e.dataOffset, out.size);
  }
  out.data = out.owner ? out.owner.get() : data_ + e.dataOffset;
  uint32_t crc = Crc32(out.data, out.size);
  if (crc != e.crc) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%08x, but the archive records %08x", crc, e.crc);
    Fail("entry " + Quote(e.name) + ": CRC-32 mismatch (the data has " + buf + "): the file is corrupt");
  }
  return out;
}

}  // namespace vilref
