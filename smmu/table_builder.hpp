// Writes VMSAv8-64 translation tables into a memory: what a guest's or host's page-table code does.
// Used by tests, benchmarks and the scripted guest driver.
#pragma once

#include <cstdint>

#include "smmu/error.hpp"
#include "smmu/memory.hpp"
#include "smmu/translation_table.hpp"

namespace vsmmu::smmu {

// Hands out zeroed, aligned pages for tables from a range of a memory.
class TablePageAllocator {
 public:
  TablePageAllocator(PhysicalMemory& mem, std::uint64_t base, std::uint64_t size) : mem_(mem), next_(base), end_(base + size) {}
  Result<std::uint64_t> allocate(std::uint64_t bytes, std::uint64_t align);
  std::uint64_t used_up_to() const { return next_; }

 private:
  PhysicalMemory& mem_;
  std::uint64_t next_;
  std::uint64_t end_;
};

enum class Stage : std::uint8_t { s1, s2 };

struct MapAttributes {
  bool read = true;
  bool write = true;
  bool execute = false;
  bool unprivileged = true;   // stage 1 AP[1]: accessible to unprivileged (PnU=0) transactions
  bool access_flag = true;    // AF; false lets tests exercise F_ACCESS and HTTU access updates
  bool dbm = false;           // dirty-bit modifier: with write=false, HTTU may make it writable-dirty
  bool allow_blocks = true;   // use block descriptors where size and alignment allow
};

class TableBuilder {
 public:
  // input_bits: 64 - T0SZ. The start level follows from input_bits and the granule as the walker derives it.
  TableBuilder(PhysicalMemory& mem, TablePageAllocator& alloc, Stage stage, Granule granule, unsigned input_bits);

  // Allocates the root table (concatenated tables at stage 2 when input_bits needs them at start_level).
  Result<void> init();
  std::uint64_t root() const { return root_; }
  unsigned start_level() const { return start_level_; }
  // Stage 2 STE.S2SL0 / Stage 1 have no SL0; T0SZ for the CD or STE.
  unsigned t0sz() const { return 64 - input_bits_; }
  unsigned s2sl0() const;

  // Maps [ia, ia+size) to [oa, oa+size); all granule-aligned. Refuses to overwrite a valid mapping (EEXIST).
  Result<void> map(std::uint64_t ia, std::uint64_t oa, std::uint64_t size, const MapAttributes& attrs);
  // Clears the leaves covering [ia, ia+size); a block only partly covered is split first.
  Result<void> unmap(std::uint64_t ia, std::uint64_t size);
  // Reads the leaf for ia (nullopt-like error ENOENT when unmapped); returns its descriptor and level.
  struct Leaf { std::uint64_t descriptor_address; std::uint64_t descriptor; int level; };
  Result<Leaf> leaf(std::uint64_t ia) const;
  // Rewrites the leaf for ia (tests use it to flip permissions, AF, DBM or dirty state).
  Result<void> write_leaf(std::uint64_t ia, std::uint64_t descriptor);

 private:
  PhysicalMemory& mem_;
  TablePageAllocator& alloc_;
  Stage stage_;
  Granule granule_;
  unsigned input_bits_;
  unsigned start_level_ = 0;
  std::uint64_t root_ = 0;
};

}  // namespace vsmmu::smmu
