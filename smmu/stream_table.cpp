#include "smmu/stream_table.hpp"

#include <algorithm>

#include "smmu/ste.hpp"

namespace vsmmu::smmu {
namespace {

constexpr std::uint64_t align_down(std::uint64_t a, unsigned log2) {
  return log2 >= 64 ? 0 : a & ~((1ULL << log2) - 1);
}

// STRTAB_BASE_CFG.SPLIT: 6, 8 and 10 are architected; the rest are reserved and CONSTRAINED UNPREDICTABLE.
// The architected value below a reserved one is used (6 for anything smaller).
unsigned effective_split(std::uint64_t split) {
  if (split >= 10) return 10;
  if (split >= 8) return 8;
  return 6;
}

}  // namespace

std::expected<SteLocation, SteLookupFailure> locate_ste(const PhysicalMemory& mem, const IdRegisters& ids,
                                                        StrtabBase base_reg, StrtabBaseCfg cfg, std::uint32_t sid) {
  const auto bad_streamid = [] { return std::unexpected(SteLookupFailure{SteLookupFailure::Kind::bad_streamid, 0}); };
  const auto sidsize = static_cast<unsigned>(ids.idr1.get(Idr1::SIDSIZE));
  // LOG2SIZE beyond SIDSIZE is treated as SIDSIZE (IHI 0070 6.3.25), which also tames a hostile 63.
  const auto log2size = static_cast<unsigned>(std::min<std::uint64_t>(cfg.get(StrtabBaseCfg::LOG2SIZE), sidsize));
  if (std::uint64_t{sid} >> log2size != 0) return bad_streamid();

  const std::uint64_t base = base_reg.get(StrtabBase::ADDR);
  const bool two_level = cfg.get(StrtabBaseCfg::FMT) == StreamTableFormat::two_level &&
                         ids.idr0.get(Idr0::ST_LEVEL) == StLevel::two_level;
  if (!two_level) {
    // Linear (also a 2-level FMT the SMMU does not implement, or a reserved FMT): the base is aligned to the
    // table's size (IHI 0070 6.3.24).
    return SteLocation{align_down(base, log2size + 6) + std::uint64_t{sid} * Ste::bytes, false};
  }

  const unsigned split = effective_split(cfg.get(StrtabBaseCfg::SPLIT));
  const unsigned l1_entries_log2 = log2size > split ? log2size - split : 0;
  const std::uint64_t l1_addr =
      align_down(base, std::max(6U, l1_entries_log2 + 3)) + (sid >> split) * StreamTableL1::bytes;
  auto l1 = mem.read_record<StreamTableL1>(l1_addr);
  if (!l1) return std::unexpected(SteLookupFailure{SteLookupFailure::Kind::fetch_abort, l1_addr});
  // Span 0: no level-2 table. Span above SPLIT + 1 is reserved and treated as invalid too. A StreamID past
  // the level-2 table's 2^(Span-1) entries is out of range (IHI 0070 5.1).
  const auto span = static_cast<unsigned>(l1->get(StreamTableL1::Span));
  const std::uint64_t l2_index = sid & ((1ULL << split) - 1);
  if (span == 0 || span > split + 1 || l2_index >> (span - 1) != 0) return bad_streamid();
  return SteLocation{align_down(l1->get(StreamTableL1::L2Ptr), span - 1 + 6) + l2_index * Ste::bytes, true};
}

}  // namespace vsmmu::smmu
