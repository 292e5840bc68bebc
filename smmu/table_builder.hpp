// Writes VMSAv8-64 translation tables into a memory: what a guest's or host's page-table code does.
// Used by tests, benchmarks and the scripted guest driver.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/error.hpp"
#include "smmu/memory.hpp"
#include "smmu/translation_table.hpp"

namespace vsmmu::smmu {

// Hands out zeroed, aligned pages for tables from a range of a memory (a bump allocator: nothing is freed).
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
  bool global = false;        // stage 1 nG=0: shared by every ASID. Off by default: Linux's io-pgtable-arm
                              // writes nG=1, so TLBI_NH_ASID removes the entries (Arm ARM D8.16)
};

class TableBuilder {
 public:
  // input_bits: 64 - T0SZ. Stage 1: the start level follows from input_bits and the granule as the walker
  // derives it. Stage 2: the same level, or one deeper with concatenated root tables when at most 16 of
  // them suffice (what Linux io-pgtable-arm does), encoded by s2sl0().
  TableBuilder(PhysicalMemory& mem, TablePageAllocator& alloc, Stage stage, Granule granule, unsigned input_bits);
  // Stage 2 with a chosen start level (tests of every S2SL0); init() refuses a level the Arm ARM does not
  // allow for input_bits (AArch64.S2InconsistentSL: 1 to stride+4 bits resolved at the start level).
  TableBuilder(PhysicalMemory& mem, TablePageAllocator& alloc, Granule granule, unsigned input_bits,
               unsigned s2_start_level);

  // Allocates the root table (concatenated tables at stage 2 when input_bits needs them at start_level).
  Result<void> init();
  std::uint64_t root() const { return root_; }
  unsigned start_level() const { return start_level_; }
  // Stage 2 STE.S2SL0 / Stage 1 have no SL0; T0SZ for the CD or STE.
  unsigned t0sz() const { return 64 - input_bits_; }
  unsigned s2sl0() const;
  Stage stage() const { return stage_; }
  Granule granule() const { return granule_; }

  // Maps [ia, ia+size) to [oa, oa+size); all granule-aligned. Refuses to overwrite a valid mapping (EEXIST);
  // the part of the range before the conflict stays mapped. Calls init() if it has not run. Stage 1 cannot
  // express a mapping without read permission (EINVAL). Leaves are Normal memory (stage 1 AttrIndx 0,
  // stage 2 MemAttr 0b1111), Inner Shareable; output addresses above 48 bits need the 64KB granule.
  Result<void> map(std::uint64_t ia, std::uint64_t oa, std::uint64_t size, const MapAttributes& attrs);
  // Clears the leaves covering [ia, ia+size); a block only partly covered is split first. Entries wholly
  // inside the range are cleared, tables included (their pages are not reused).
  Result<void> unmap(std::uint64_t ia, std::uint64_t size);
  // Reads the leaf for ia (nullopt-like error ENOENT when unmapped); returns its descriptor and level.
  struct Leaf { std::uint64_t descriptor_address; std::uint64_t descriptor; int level; };
  Result<Leaf> leaf(std::uint64_t ia) const;
  // Rewrites the leaf for ia (tests use it to flip permissions, AF, DBM or dirty state).
  Result<void> write_leaf(std::uint64_t ia, std::uint64_t descriptor);

 private:
  // The builder writes OA[51:48] in bits [15:12] with the 64KB granule (FEAT_LPA layout); those bits are zero
  // for any address below 2^48, so the tables read the same with or without LPA.
  bool lpa() const { return granule_ == Granule::k64K; }
  std::uint64_t entries(int level) const;
  std::uint64_t index(std::uint64_t ia, int level) const;
  std::uint64_t leaf_descriptor(int level, std::uint64_t oa, const MapAttributes& attrs) const;
  Result<std::uint64_t> new_table();
  Result<void> write_entries(std::uint64_t pa, std::span<const std::uint64_t> entries);
  Result<void> map_level(std::uint64_t table, int level, std::uint64_t ia, std::uint64_t end, std::uint64_t oa,
                         const MapAttributes& attrs);
  Result<void> unmap_level(std::uint64_t table, int level, std::uint64_t ia, std::uint64_t end);
  Result<std::uint64_t> split(std::uint64_t entry_pa, std::uint64_t block, int level);

  PhysicalMemory& mem_;
  TablePageAllocator& alloc_;
  Stage stage_;
  Granule granule_;
  unsigned input_bits_;
  unsigned start_level_ = 0;
  std::uint64_t root_ = 0;
  bool initialized_ = false;
  std::vector<std::uint64_t> scratch_;  // one table's worth of entries, reused so mapping does not allocate
};

}  // namespace vsmmu::smmu
