// A validating reader of the ZIP archives `torch.save` writes (and any ZIP of stored or deflated
// entries): end of central directory (ZIP64 too), the central directory, each local header against
// it, entries inside the file and not overlapping, and before anything is inflated, a cap on each
// entry's and on the whole archive's uncompressed size. Every entry's CRC-32 is checked when it is
// read. Hand-written because LibTorch's reader (miniz, built without CRC checks) trusts the sizes
// the archive declares and allocates them; no ZIP library that Node's toolchain ships is reachable
// from the addon. Errors are std::runtime_error naming the entry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace vilref {

struct ZipLimits {
  uint64_t maxEntryBytes = 0;  // largest uncompressed size of one entry
  uint64_t maxTotalBytes = 0;  // largest sum of the entries' uncompressed sizes
};

struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0 stored, 8 deflated
  uint32_t crc = 0;
  uint64_t compressedSize = 0;
  uint64_t size = 0;  // uncompressed
  uint64_t headerOffset = 0;
  uint64_t dataOffset = 0;
};

// An entry's bytes: a view into the archive (`owner` empty) or an owned buffer.
struct EntryBytes {
  const uint8_t* data = nullptr;
  size_t size = 0;
  std::shared_ptr<uint8_t> owner;
};

// CRC-32 (ISO-HDLC, as ZIP and zlib), continuing from `crc`.
uint32_t Crc32(const uint8_t* data, size_t size, uint32_t crc = 0);

class ZipArchive {
 public:
  // Parses and validates the directory of `data[0, size)`, which must outlive the archive.
  ZipArchive(const uint8_t* data, size_t size, const ZipLimits& limits);

  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* Find(const std::string& name) const;

  // The entry's uncompressed bytes with their CRC-32 checked. `copy`: an owned buffer even for a
  // stored entry (the CRC is then checked on the copy, so the bytes used are the bytes checked).
  EntryBytes Read(const ZipEntry& entry, bool copy) const;

 private:
  void ReadDirectory(uint64_t cdOffset, uint64_t cdSize, uint64_t count, uint64_t cdEnd);
  void CheckLocalHeader(ZipEntry& entry, uint16_t flags) const;
  void CheckLayout(uint64_t cdOffset);
  std::shared_ptr<uint8_t> Inflate(const ZipEntry& entry) const;

  const uint8_t* data_;
  size_t size_;
  ZipLimits limits_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace vilref
