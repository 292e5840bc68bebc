// Writes VMSAv8-64 tables the way a page-table library does (Linux io-pgtable-arm is the model to match):
// blocks where size and alignment allow, concatenated stage-2 roots, block splitting on partial unmap.
#include "smmu/table_builder.hpp"

#include "base/try.hpp"

#include <algorithm>
#include <array>
#include <bit>

namespace vsmmu::smmu {

static_assert(std::endian::native == std::endian::little, "table runs are copied as host words");

namespace {

constexpr const char* kWhere = "smmu.table_builder";

}  // namespace

Result<std::uint64_t> TablePageAllocator::allocate(std::uint64_t bytes, std::uint64_t align) {
  if (bytes == 0 || !std::has_single_bit(align))
    return fail(EINVAL, kWhere, "bad table allocation: {:#x} bytes aligned to {:#x}", bytes, align);
  const std::uint64_t base = (next_ + align - 1) & ~(align - 1);
  if (base < next_ || base > end_ || end_ - base < bytes)
    return fail(ENOMEM, kWhere, "table pool exhausted: {:#x} bytes aligned to {:#x} do not fit below {:#x}", bytes,
                align, end_);
  static constexpr std::array<std::byte, 4096> zeros{};
  for (std::uint64_t off = 0; off < bytes; off += zeros.size()) {
    const auto len = static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), bytes - off));
    if (auto w = mem_.write(base + off, std::span(zeros.data(), len)); !w)
      return fail(EFAULT, kWhere, "no memory behind the table pool at {:#x}", w.error().address);
  }
  next_ = base + bytes;
  return base;
}

TableBuilder::TableBuilder(PhysicalMemory& mem, TablePageAllocator& alloc, Stage stage, Granule granule,
                           unsigned input_bits)
    : mem_(mem), alloc_(alloc), stage_(stage), granule_(granule), input_bits_(input_bits) {
  if (input_bits_ <= granule_shift(granule_) || input_bits_ > 64) return;  // init() refuses it
  int level = s1_start_level(granule_, input_bits_);
  // Stage 2 starts one level deeper when at most 16 concatenated tables cover the input
  // (AArch64.S2InconsistentSL allows a level's bits plus 4).
  if (stage_ == Stage::s2 && level < kFinalLevel &&
      input_bits_ <= level_shift(granule_, level + 1) + bits_per_level(granule_) + 4)
    ++level;
  start_level_ = static_cast<unsigned>(level);
}

TableBuilder::TableBuilder(PhysicalMemory& mem, TablePageAllocator& alloc, Granule granule, unsigned input_bits,
                           unsigned s2_start_level)
    : mem_(mem), alloc_(alloc), stage_(Stage::s2), granule_(granule), input_bits_(input_bits),
      start_level_(s2_start_level) {}

unsigned TableBuilder::s2sl0() const { return s2sl0_from_start_level(granule_, static_cast<int>(start_level_)); }

std::uint64_t TableBuilder::entries(int level) const {
  return level == static_cast<int>(start_level_) ? root_entries(granule_, input_bits_, level)
                                                 : 1ULL << bits_per_level(granule_);
}

std::uint64_t TableBuilder::index(std::uint64_t ia, int level) const {
  return (ia >> level_shift(granule_, level)) & (entries(level) - 1);
}

Result<void> TableBuilder::init() {
  if (initialized_) return {};
  const unsigned max_bits = granule_ == Granule::k64K ? 52 : 48;
  if (input_bits_ <= granule_shift(granule_) || input_bits_ > max_bits)
    return fail(EINVAL, kWhere, "input size of {} bits is outside what a {}KB granule translates (at most {})",
                input_bits_, granule_size(granule_) / 1024, max_bits);
  const int start = static_cast<int>(start_level_);
  if (start > kFinalLevel || input_bits_ <= level_shift(granule_, start) ||
      input_bits_ > level_shift(granule_, start) + bits_per_level(granule_) + (stage_ == Stage::s2 ? 4 : 0))
    return fail(EINVAL, kWhere, "start level {} cannot translate {} input bits with a {}KB granule", start_level_,
                input_bits_, granule_size(granule_) / 1024);
  // The root is aligned to its size, and to 64 bytes at least (the 52-bit TTB rule, IHI 0070 5.4 TTB0).
  const std::uint64_t bytes = std::max<std::uint64_t>(entries(static_cast<int>(start_level_)) * 8, 64);
  VSMMU_TRY_ASSIGN(auto root, alloc_.allocate(bytes, bytes));
  root_ = root;
  scratch_.assign(static_cast<std::size_t>(1ULL << bits_per_level(granule_)), 0);
  initialized_ = true;
  return {};
}

std::uint64_t TableBuilder::leaf_descriptor(int level, std::uint64_t oa, const MapAttributes& a) const {
  Descriptor d;
  d.set(Descriptor::Valid, true)
      .set(Descriptor::Table, level == kFinalLevel)  // page at level 3, block above
      .set(Descriptor::AF, a.access_flag)
      .set(Descriptor::SH, 3)
      .set(Descriptor::DBM, a.dbm);
  if (stage_ == Stage::s1) {
    d.set(Descriptor::AP2, !a.write)
        .set(Descriptor::AP1, a.unprivileged)
        .set(Descriptor::nG, !a.global)
        .set(Descriptor::UXN, !a.execute)
        .set(Descriptor::PXN, !a.execute);
  } else {
    d.set(Descriptor::MemAttr, 0xf)
        .set(Descriptor::S2AP_R, a.read)
        .set(Descriptor::S2AP_W, a.write)
        .set(Descriptor::S2XN, a.execute ? 0 : 2);  // XN[1] = bit 54: execute-never at both privileges
  }
  return Descriptor::with_address(d.dw[0], oa, lpa());
}

Result<std::uint64_t> TableBuilder::new_table() {
  const std::uint64_t size = granule_size(granule_);
  return alloc_.allocate(size, size);
}

Result<void> TableBuilder::write_entries(std::uint64_t pa, std::span<const std::uint64_t> run) {
  if (auto w = mem_.write(pa, std::as_bytes(run)); !w)
    return fail(EFAULT, kWhere, "no memory behind the table at {:#x}", w.error().address);
  return {};
}

Result<void> TableBuilder::map(std::uint64_t ia, std::uint64_t oa, std::uint64_t size, const MapAttributes& attrs) {
  VSMMU_TRY(init());
  const std::uint64_t g = granule_size(granule_);
  const unsigned oa_bits = lpa() ? 52 : 48;
  if (size == 0 || ((ia | oa | size) & (g - 1)) != 0)
    return fail(EINVAL, kWhere, "map [{:#x}, +{:#x}) -> {:#x}: not aligned to the {:#x} granule", ia, size, oa, g);
  if (ia + size < ia || ((ia + size - 1) >> input_bits_) != 0)
    return fail(ERANGE, kWhere, "map [{:#x}, +{:#x}): beyond the {}-bit input range", ia, size, input_bits_);
  if (oa + size < oa || ((oa + size - 1) >> oa_bits) != 0)
    return fail(ERANGE, kWhere, "map to [{:#x}, +{:#x}): beyond the {}-bit output range of this granule", oa, size,
                oa_bits);
  if (stage_ == Stage::s1 && !attrs.read)
    return fail(EINVAL, kWhere, "stage-1 descriptors cannot deny read access (AP[2:1] has no such encoding)");
  return map_level(root_, static_cast<int>(start_level_), ia, ia + size, oa, attrs);
}

Result<void> TableBuilder::map_level(std::uint64_t table, int level, std::uint64_t ia, std::uint64_t end,
                                     std::uint64_t oa, const MapAttributes& attrs) {
  const unsigned shift = level_shift(granule_, level);
  const std::uint64_t entry = 1ULL << shift;
  const bool leaves_here = level == kFinalLevel || (attrs.allow_blocks && block_allowed(granule_, level, false));
  while (ia < end) {
    const std::uint64_t idx = index(ia, level);
    if (leaves_here && ((ia | oa) & (entry - 1)) == 0 && end - ia >= entry) {
      // A run of whole entries: one read to check they are free, one write to fill them.
      const std::uint64_t n = std::min({(end - ia) >> shift, entries(level) - idx, std::uint64_t{scratch_.size()}});
      std::span<std::uint64_t> run(scratch_.data(), static_cast<std::size_t>(n));
      const std::uint64_t pa = table + idx * 8;
      if (auto r = mem_.read(pa, std::as_writable_bytes(run)); !r)
        return fail(EFAULT, kWhere, "no memory behind the table at {:#x}", r.error().address);
      for (std::size_t i = 0; i < run.size(); ++i) {
        if (Descriptor::Valid.extract(run[i]))
          return fail(EEXIST, kWhere, "{:#x} is already mapped (level {} entry at {:#x})", ia + (i << shift), level,
                      pa + i * 8);
        run[i] = leaf_descriptor(level, oa + (i << shift), attrs);
      }
      VSMMU_TRY(write_entries(pa, run));
      ia += run.size() << shift;
      oa += run.size() << shift;
      continue;
    }
    const std::uint64_t chunk_end = std::min(end, (ia | (entry - 1)) + 1);
    const std::uint64_t pa = table + idx * 8;
    const auto d = mem_.read64(pa);
    if (!d) return fail(EFAULT, kWhere, "no memory behind the table at {:#x}", pa);
    std::uint64_t next = 0;
    if (!Descriptor::Valid.extract(*d)) {
      VSMMU_TRY_ASSIGN(auto t, new_table());
      next = t;
      Descriptor td;
      td.set(Descriptor::Valid, true).set(Descriptor::Table, true);
      if (auto w = mem_.write64(pa, Descriptor::with_address(td.dw[0], next, lpa())); !w)
        return fail(EFAULT, kWhere, "no memory behind the table at {:#x}", pa);
    } else if (Descriptor::Table.extract(*d)) {
      next = Descriptor::output_address(*d, granule_shift(granule_), lpa());
    } else {
      return fail(EEXIST, kWhere, "{:#x} is already mapped by a level {} block", ia, level);
    }
    VSMMU_TRY(map_level(next, level + 1, ia, chunk_end, oa, attrs));
    oa += chunk_end - ia;
    ia = chunk_end;
  }
  return {};
}

Result<void> TableBuilder::unmap(std::uint64_t ia, std::uint64_t size) {
  if (!initialized_) return {};  // nothing was ever mapped
  const std::uint64_t g = granule_size(granule_);
  if (size == 0 || ((ia | size) & (g - 1)) != 0)
    return fail(EINVAL, kWhere, "unmap [{:#x}, +{:#x}): not aligned to the {:#x} granule", ia, size, g);
  if (ia + size < ia || ((ia + size - 1) >> input_bits_) != 0)
    return fail(ERANGE, kWhere, "unmap [{:#x}, +{:#x}): beyond the {}-bit input range", ia, size, input_bits_);
  return unmap_level(root_, static_cast<int>(start_level_), ia, ia + size);
}

Result<std::uint64_t> TableBuilder::split(std::uint64_t entry_pa, std::uint64_t block, int level) {
  // The next level maps the same output with the same attributes: blocks, or pages at level 3 (every
  // granule allows a block one level below a block).
  VSMMU_TRY_ASSIGN(auto t, new_table());
  const int child = level + 1;
  const unsigned child_shift = level_shift(granule_, child);
  const std::uint64_t base = Descriptor::output_address(block, level_shift(granule_, level), lpa());
  std::uint64_t attrs = block & ~(Descriptor::Address.mask | Descriptor::Table.mask | Descriptor::Contiguous.mask);
  attrs = Descriptor::Table.insert(attrs, child == kFinalLevel);
  for (std::size_t i = 0; i < scratch_.size(); ++i)
    scratch_[i] = Descriptor::with_address(attrs, base + (std::uint64_t{i} << child_shift), lpa());
  VSMMU_TRY(write_entries(t, scratch_));
  Descriptor td;
  td.set(Descriptor::Valid, true).set(Descriptor::Table, true);
  if (auto w = mem_.write64(entry_pa, Descriptor::with_address(td.dw[0], t, lpa())); !w)
    return fail(EFAULT, kWhere, "no memory behind the table at {:#x}", entry_pa);
  return t;
}

Result<void> TableBuilder::unmap_level(std::uint64_t table, int level, std::uint64_t ia, std::uint64_t end) {
  const unsigned shift = level_shift(granule_, level);
  const std::uint64_t entry = 1ULL << shift;
  while (ia < end) {
    const std::uint64_t idx = index(ia, level);
    const std::uint64_t pa = table + idx * 8;
    if ((ia & (entry - 1)) == 0 && end - ia >= entry) {
      // Whole entries: whatever they hold goes, in one write.
      const std::uint64_t n = std::min({(end - ia) >> shift, entries(level) - idx, std::uint64_t{scratch_.size()}});
      std::span<std::uint64_t> run(scratch_.data(), static_cast<std::size_t>(n));
      std::fill(run.begin(), run.end(), 0);
      VSMMU_TRY(write_entries(pa, run));
      ia += n << shift;
      continue;
    }
    const std::uint64_t chunk_end = std::min(end, (ia | (entry - 1)) + 1);
    const auto d = mem_.read64(pa);
    if (!d) return fail(EFAULT, kWhere, "no memory behind the table at {:#x}", pa);
    if (Descriptor::Valid.extract(*d)) {
      std::uint64_t next = 0;
      if (level < kFinalLevel && Descriptor::Table.extract(*d)) {
        next = Descriptor::output_address(*d, granule_shift(granule_), lpa());
      } else {
        VSMMU_TRY_ASSIGN(auto t, split(pa, *d, level));
        next = t;
      }
      VSMMU_TRY(unmap_level(next, level + 1, ia, chunk_end));
    }
    ia = chunk_end;
  }
  return {};
}

Result<TableBuilder::Leaf> TableBuilder::leaf(std::uint64_t ia) const {
  if (!initialized_) return fail(ENOENT, kWhere, "{:#x} is not mapped (no tables yet)", ia);
  if ((ia >> input_bits_) != 0) return fail(ERANGE, kWhere, "{:#x} is beyond the {}-bit input range", ia, input_bits_);
  std::uint64_t table = root_;
  for (int level = static_cast<int>(start_level_);; ++level) {
    const std::uint64_t pa = table + index(ia, level) * 8;
    const auto d = mem_.read64(pa);
    if (!d) return fail(EFAULT, kWhere, "no memory behind the table at {:#x}", pa);
    if (!Descriptor::Valid.extract(*d)) return fail(ENOENT, kWhere, "{:#x} is not mapped (level {})", ia, level);
    if (level == kFinalLevel || !Descriptor::Table.extract(*d)) return Leaf{pa, *d, level};
    table = Descriptor::output_address(*d, granule_shift(granule_), lpa());
  }
}

Result<void> TableBuilder::write_leaf(std::uint64_t ia, std::uint64_t descriptor) {
  VSMMU_TRY_ASSIGN(auto l, leaf(ia));
  if (auto w = mem_.write64(l.descriptor_address, descriptor); !w)
    return fail(EFAULT, kWhere, "no memory behind the table at {:#x}", l.descriptor_address);
  return {};
}

}  // namespace vsmmu::smmu
